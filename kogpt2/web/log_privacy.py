"""Keep titles out of the log lines that other code writes about our requests.

The app's own access line (observe.py) names the route, never the raw path, and carries the
prompt only with KOGPT2_LOG_PROMPTS. Other loggers are not so careful:
- Zappa's handler logs every request on `zappa.wsgi` in Apache's format: the path *with its
  query string* and the Referer. The page's example links are `/?text=<title>`.
- With `debug: true` (Zappa's default) and `log_level: DEBUG`, `zappa.handler` logs every
  raw event, body and query included ("Zappa Event: {...}").
- Werkzeug's development server (`make dev`) logs the request line like Zappa does.

Unless KOGPT2_LOG_PROMPTS is on, a filter on those loggers cuts query strings out of the lines
and drops the event dumps. A logger's filters see every record made on that logger, whichever
handler (Lambda's runtime, basicConfig, a test's capture) writes it.
"""

import logging
import re

REQUEST_LOGGERS = ["zappa.wsgi", "werkzeug"]  # a request line with its query string
EVENT_LOGGERS = ["zappa.handler"]  # raw events, when Zappa's `debug` is on
EVENT_DUMP = "Zappa Event:"
# "?..." up to the next space or quote: the request line's query and the Referer's.
QUERY = re.compile(r"\?[^\s\"]*")


class DropQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(EVENT_DUMP):
            return False
        if "?" in message:
            record.msg, record.args = QUERY.sub("", message), ()
        return True


PRIVACY_FILTER = DropQueryStrings()


def init_app(log_prompts: bool) -> None:
    """Install the filter, or take it away when the operator asked for prompts in the log.

    Loggers are process-wide: the last app created in a process decides (one, in practice).
    """
    for name in REQUEST_LOGGERS + EVENT_LOGGERS:
        logger = logging.getLogger(name)
        if log_prompts:
            logger.removeFilter(PRIVACY_FILTER)
        else:
            logger.addFilter(PRIVACY_FILTER)  # a no-op when it is already there
