/** The atlas viewer: a node:http server with a JSON API and a plain DOM + SVG page (web/). */
export { startServer, validatePort, type RunningServer, type ServerOptions } from './server.js';
export { AtlasApi, MAX_COMPARE, type GridCell, type GridPage, type GroupKey } from './api.js';
export { HttpError, DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY_TEXT } from './params.js';
export { resolveStatic, defaultStaticDir, CONTENT_TYPES } from './static.js';
export { reproduceCommand, shellQuote, type Reproduction } from './reproduce.js';
export { ModelSources, piecesOf, type ModelSource } from './tokens.js';
