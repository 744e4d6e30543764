// /docs: Swagger UI over this server's /openapi.json. A file of the app, not inline code, so
// the page's Content-Security-Policy allows scripts from 'self' only. "Try it out" sends its
// requests to the document's server, which follows the app's mount point (/dev behind a stage).
"use strict";

const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.specUrl,
  domNode: root,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null, // the default asks validator.swagger.io; nothing leaves this origin
});
