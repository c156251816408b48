// Bundles the browser client into dist/: index.html, app.js, app.css and sw.js, embedded into the
// kizuna binary by the server crate's build script and served from every node's public port.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
await esbuild.build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ["es2020", "chrome100", "safari15", "firefox100"],
  outfile: "dist/app.js",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
copyFileSync("src/app.css", "dist/app.css");
// The service worker stays plain JavaScript (its scope's types clash with the page's DOM ones).
copyFileSync("src/sw.js", "dist/sw.js");
