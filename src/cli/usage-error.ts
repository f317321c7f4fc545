/** A command line that cannot work as given: exit code 2 and a one-line message. */
export class UsageError extends Error {}
