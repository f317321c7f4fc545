#!/usr/bin/env node
// The `ucp` command. The CLI is TypeScript compiled into dist/. A source checkout installed without its dev
// dependencies (npm ci --omit=dev) has no compiler and so no dist/: say in one line how to get a build
// instead of failing with a module-not-found stack trace.
import { existsSync } from 'node:fs';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'ucp: this copy of ucp-edge is not built (no dist/); build it with its dev dependencies (`npm ci && npm run build`), ' +
      'or install a packed release, which ships the build (`npm pack` where TypeScript is installed, then `npm install -g ucp-edge-<version>.tgz`)\n',
  );
  process.exit(1);
}
await import(main.href);
