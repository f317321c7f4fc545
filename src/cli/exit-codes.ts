/**
 * How every `ucp` command exits (the README's table):
 *
 * | code | meaning |
 * |---|---|
 * | 0 | done: the command did what was asked (a job that ran and exited non-zero is not "done": 1) |
 * | 1 | failed: a job failed, a node or the hub could not be reached, a request was refused |
 * | 2 | bad usage: an unknown command or option, a missing argument, a bad value, configuration or plan |
 * | 3 | not finished yet: the wait ran out, a notice is still queued, or Ctrl-C stopped the wait; the work goes on and can be collected later |
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_NOT_DONE = 3;
