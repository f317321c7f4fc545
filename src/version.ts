/** Kept equal to package.json's version by a unit test; read at run time without touching the filesystem. */
export const VERSION = '0.1.0';
