// Bundles the frontend entry points into dist/ (served by Django at /static/).
//   npm run build           one minified build with sourcemaps
//   npm run watch           rebuild on change (development)
// To add a page-specific bundle, add its source file to `entryPoints`; the output keeps the
// file's base name (src/catalog.js -> dist/catalog.js), referenced as {% static 'catalog.js' %}.
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");

const options = {
  entryPoints: ["src/app.js", "src/app.css", "src/node_bind.js", "src/arbiter.js"],
  outdir: "dist",
  outbase: "src",
  bundle: true,
  minify: true,
  sourcemap: true,
  // Plain scripts loaded with <script defer>, not modules: wrap each in an IIFE.
  format: "iife",
  target: ["es2020", "chrome90", "firefox90", "safari14"],
  legalComments: "none",
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
