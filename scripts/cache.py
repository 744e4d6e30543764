#!/usr/bin/env python3
"""List and prune the prepared copies in the cache (KOGPT2_CACHE_DIR, default ~/.cache/kogpt2).

    python scripts/cache.py list               every entry: engine, format, size, versions,
                                               source, and whether it is in use or stale
    python scripts/cache.py prune              remove what will never be loaded again: stale
                                               entries (other library versions, an older
                                               format, a source gone or changed), incomplete
                                               and set-aside ones
    python scripts/cache.py prune --unused     also every entry the configured model doesn't use
    python scripts/cache.py prune --dry-run    say what would go

"In use" is the entry the service's settings (KOGPT2_MODEL, KOGPT2_ENGINE, ...) load, found
without the network. `make cache-list`, `make cache-prune` run these.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from kogpt2.config import Settings, make_generator  # noqa: E402
from kogpt2.model import cache  # noqa: E402
from kogpt2.model.seam import short_reason  # noqa: E402

COLUMNS = ("NAME", "ENGINE", "FORMAT", "SIZE", "VERSIONS", "SOURCE", "STATUS")


def megabytes(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


def served_entry(settings: Settings) -> tuple[Path | None, str]:
    """The entry the configured model is served from, and a line about it."""
    try:
        entry = make_generator(settings).origin.cache_entry()
    except Exception as exc:  # the model isn't here, or can't be planned: none is in use
        return None, f"the configured model ({settings.model}) uses none: {short_reason(exc)}"
    if entry is None:
        return None, f"the configured model ({settings.model}) is served without a prepared copy"
    return entry, f"the configured model ({settings.model}) uses {entry.name}"


def show(entries: list[cache.Entry]) -> None:
    rows = [COLUMNS] + [
        (e.name, e.engine, e.weight_format, megabytes(e.size), e.versions, e.source,
         e.status + (f": {e.reason}" if e.reason else ""))
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", help="default: KOGPT2_CACHE_DIR, or ~/.cache/kogpt2")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every entry and its status")
    prune = commands.add_parser("prune", help="remove entries that will never be loaded again")
    prune.add_argument("--unused", action="store_true",
                       help="also remove complete entries the configured model doesn't use")
    prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    args = parser.parse_args(argv)

    settings = Settings(**({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    root = make_generator(settings).origin.cache_root
    in_use, about = served_entry(settings)
    entries = cache.entries(root, in_use)
    print(f"cache {root}: {len(entries)} entries, {megabytes(sum(e.size for e in entries))}; "
          f"{about}")
    if args.command == "list":
        if entries:
            show(entries)
        return 0

    doomed = cache.PRUNABLE + (("unused",) if args.unused else ())
    freed, kept = 0, []
    for entry in entries:
        if entry.status not in doomed:
            kept.append(entry)
            continue
        why = entry.status + (f": {entry.reason}" if entry.reason else "")
        if args.dry_run:
            print(f"would remove {entry.name} ({megabytes(entry.size)}), {why}")
        elif cache.remove(entry):
            print(f"removed {entry.name} ({megabytes(entry.size)}), {why}")
        else:
            print(f"kept {entry.name}: a preparation holds its lock")
            kept.append(entry)
            continue
        freed += entry.size
    counts = {status: sum(e.status == status for e in kept) for status in cache.STATUSES}
    left = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing"
    verb = "would free" if args.dry_run else "freed"
    hint = " (--unused removes unused ones)" if counts["unused"] and not args.unused else ""
    print(f"{verb} {megabytes(freed)}; kept {left}{hint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
