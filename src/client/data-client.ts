import { JOB_ID_PATTERN, JOB_ID_RULE, quote, type BodyOf } from '../protocol/index.js';
import { BrokerChoice, checkDataName, DataTransfer, RemoteError, type NodeLink, type PutResult, type ReadHead, type WaitNotice } from '../transport/index.js';

export type DataItem = BodyOf<'data_items'>['items'][number];
export type ListedName = BodyOf<'data_listing'>['items'][number];

/** Names are fetched and listed this many at a time. */
const PAGE = 200;

/**
 * Named data through a broker: put, get (one name, or a name and everything below it), list and delete.
 * The broker decides which datastore holds what. Objects of any size move in chunks, streamed from and to
 * files, with their digest checked.
 */
export class DataClient {
  private readonly choice: BrokerChoice;
  readonly transfer: DataTransfer;

  constructor(
    private readonly link: NodeLink,
    /** How long to wait for a broker (and, to store data, a datastore) to appear before giving up. */
    private readonly brokerWaitMs: number,
    /** The broker to attach to while it is alive (node.broker); otherwise the least loaded. */
    preferred?: string,
    /** Says what a request waits for, e.g. on the terminal; silent by default. */
    private readonly waiting: WaitNotice = () => () => undefined,
  ) {
    this.choice = new BrokerChoice(link, brokerWaitMs, preferred, waiting);
    this.transfer = new DataTransfer(link, () => this.broker());
  }

  /** Attaches to this broker from now on, whenever it is alive. */
  prefer(broker: string | undefined): void {
    this.choice.prefer(broker);
  }

  /**
   * The live broker to talk to: the preferred one if it is alive, else the one attached to before, else
   * the least loaded (by its heartbeats; ties by id). A lost broker is replaced at the next request.
   */
  broker(): Promise<string> {
    return this.choice.broker();
  }

  /** Stores bytes; with no datastore alive yet, waits for one as long as for a broker. */
  put(name: string, bytes: Uint8Array): Promise<PutResult> {
    return this.storing(name, () => this.transfer.putBytes(name, bytes));
  }

  /** Stores a file of any size, streamed a chunk at a time; waits for a datastore as put does. */
  putFile(name: string, path: string): Promise<PutResult & { size: number }> {
    return this.storing(name, () => this.transfer.putFile(name, path));
  }

  private async storing<T>(name: string, store: () => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.brokerWaitMs;
    let done: (() => void) | undefined;
    try {
      for (;;) {
        try {
          return await store();
        } catch (err) {
          if (!(err instanceof RemoteError && err.code === 'no_datastore') || performance.now() > deadline) throw err;
          done ??= this.waiting(`waiting for a datastore to hold ${quote(name)} (up to ${Math.round(this.brokerWaitMs / 1_000)} s; start one with \`ucp datastore\`)`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    } finally {
      done?.();
    }
  }

  /** One name's whole content in memory, with its version. */
  async get(name: string): Promise<DataItem> {
    const { bytes, head } = await this.transfer.readAll(name);
    return { name, bytes, at: head.at, writer: head.writer };
  }

  /** One name's content written to a file, streamed, its digest checked. */
  getToFile(name: string, path: string): Promise<ReadHead> {
    return this.transfer.readToFile(name, path);
  }

  /**
   * The name and every name below it, with their bytes. Objects too large for one message come with
   * `size` and no bytes: read them with getToFile.
   */
  async *getPrefix(name: string): AsyncGenerator<DataItem> {
    checkDataName(name);
    const broker = await this.broker();
    let after: string | undefined;
    do {
      const reply = await this.link.request(broker, 'data_get', { name, prefix: true, limit: PAGE, ...(after !== undefined ? { after } : {}) });
      if (reply.kind !== 'data_items') throw new Error(`the broker answered ${reply.kind} to a get`);
      yield* reply.body.items;
      after = reply.body.next;
    } while (after !== undefined);
  }

  /** Every name at or below `prefix` (all names when omitted). */
  async list(prefix?: string): Promise<ListedName[]> {
    if (prefix !== undefined) checkDataName(prefix);
    const broker = await this.broker();
    const all: ListedName[] = [];
    let after: string | undefined;
    do {
      const reply = await this.link.request(broker, 'data_list', { limit: PAGE, ...(prefix !== undefined ? { prefix } : {}), ...(after !== undefined ? { after } : {}) });
      if (reply.kind !== 'data_listing') throw new Error(`the broker answered ${reply.kind} to a listing`);
      all.push(...reply.body.items);
      after = reply.body.next;
    } while (after !== undefined);
    return all;
  }

  /** Deletes one name, or a job's data except its result archive; returns how many names went. */
  async delete(target: { name: string } | { jobId: string }): Promise<number> {
    if ('jobId' in target && !JOB_ID_PATTERN.test(target.jobId)) throw new Error(`${quote(target.jobId)} is not a job id: ${JOB_ID_RULE}`);
    const what = 'name' in target ? { name: checkDataName(target.name) } : { job_id: target.jobId };
    const reply = await this.link.request(await this.broker(), 'data_delete', what);
    if (reply.kind !== 'data_deleted') throw new Error(`the broker answered ${reply.kind} to a delete`);
    return reply.body.count;
  }
}
