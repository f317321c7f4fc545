import { VERSION } from '../version.js';

/** How a node names its software in births and status replies. */
export const SOFTWARE = `ucp-edge/${VERSION}`;
