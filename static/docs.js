// /docs: Swagger UI over this server's /openapi.json. A file of the app, not inline code, so
// the page's Content-Security-Policy allows scripts from 'self' only.
"use strict";

const root = document.getElementById("swagger-ui");

function show(spec) {
  // "Try it out" sends requests to the document's servers. Without any, Swagger UI would send
  // them to the origin's root, past a stage prefix (/dev): the page's own mount point is used.
  if (!Array.isArray(spec.servers) || spec.servers.length === 0) {
    spec.servers = [{ url: root.dataset.apiRoot }];
  }
  window.ui = SwaggerUIBundle({
    spec,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null, // the default asks validator.swagger.io; nothing leaves this origin
  });
}

fetch(root.dataset.specUrl)
  .then((response) => {
    if (!response.ok) throw new Error(`openapi.json answered ${response.status}`);
    return response.json();
  })
  .then(show)
  .catch((error) => {
    root.textContent = `The API document could not be loaded: ${error.message}`;
  });
