export type StoreErrorCode = 'store_locked' | 'store_owned_by_other_node' | 'store_schema_too_new' | 'store_open_failed';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
