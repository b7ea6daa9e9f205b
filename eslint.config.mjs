// ESLint for the site's JavaScript (`make lint`): the page's native ES modules, served
// unbundled from static/, and the Node scripts the tests run. The size limits keep the
// modules readable: a file that outgrows them is split by concern, not given an exception.

import js from "@eslint/js";
import globals from "globals";

const sizeLimits = {
  "max-lines": ["error", { max: 300, skipBlankLines: true, skipComments: true }],
  "max-lines-per-function": ["error", { max: 80, skipBlankLines: true, skipComments: true }],
};

export default [
  {
    ignores: [
      "node_modules/",
      ".venv/",
      "staticfiles/",
      "artifacts/",
      "bench/results/",
      ".run/",
      "var/",
    ],
  },
  js.configs.recommended,
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: globals.browser,
    },
    rules: sizeLimits,
  },
  {
    files: ["tests/node/**/*.mjs"],
    languageOptions: {
      ecmaVersion: "latest",
      sourceType: "module",
      globals: globals.node,
    },
    rules: sizeLimits,
  },
  {
    files: ["eslint.config.mjs"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
];
