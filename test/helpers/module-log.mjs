// Preloaded with `node --import` by tests: appends every module URL the process resolves to the file named
// by MODULE_LOG_FILE, so a test sees which modules a command loads.
import { register } from 'node:module';

const file = process.env.MODULE_LOG_FILE;
if (file !== undefined && file !== '') {
  register(
    `data:text/javascript,${encodeURIComponent(`
      import { appendFileSync } from 'node:fs';
      export async function resolve(specifier, context, next) {
        const resolved = await next(specifier, context);
        appendFileSync(${JSON.stringify(file)}, resolved.url + '\\n');
        return resolved;
      }
    `)}`,
  );
}
