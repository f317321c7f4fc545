import { DATA_NAME_PATTERN, JOB_ID_PATTERN, type BodyOf } from '../protocol/index.js';
import type { NodeLink } from '../transport/index.js';

export type DataItem = BodyOf<'data_items'>['items'][number];
export type ListedName = BodyOf<'data_listing'>['items'][number];

/** How long a client waits to hear from its preferred broker before attaching to another. */
const PREFERRED_GRACE_MS = 2_000;
/** Names are fetched and listed this many at a time. */
const PAGE = 200;

/** Refuses a bad name here, with a reason, rather than letting every receiver drop the message. */
function checkName(name: string): string {
  if (name.length > 512 || !DATA_NAME_PATTERN.test(name)) {
    throw new Error(`"${name}" is not a data name: use segments of A-Z a-z 0-9 . _ - separated by / (no "." or ".." segments, at most 512 characters)`);
  }
  return name;
}

/**
 * Named data through a broker: put, get (one name, or a name and everything below it), list and delete.
 * The broker decides which datastore holds what.
 */
export class DataClient {
  /** The broker this client attached to; it stays while that broker lives. */
  private attached?: string;
  /** When this client first looked for a broker: its preferred one gets a moment to be heard from. */
  private firstLook?: number;

  constructor(
    private readonly link: NodeLink,
    /** How long to wait for a broker to appear before giving up. */
    private readonly brokerWaitMs: number,
    /** The broker to attach to while it is alive (node.broker); otherwise the least loaded. */
    private preferred?: string,
  ) {}

  /** Attaches to this broker from now on, whenever it is alive. */
  prefer(broker: string | undefined): void {
    this.preferred = broker;
  }

  /**
   * The live broker to talk to: the preferred one if it is alive, else the one attached to before, else
   * the least loaded (by its heartbeats; ties by id). A lost broker is replaced at the next request.
   */
  async broker(): Promise<string> {
    const deadline = performance.now() + this.brokerWaitMs;
    for (;;) {
      const brokers = this.link.peers.alive('broker');
      const alive = (id: string | undefined) => id !== undefined && id !== '' && brokers.some((p) => p.id === id);
      if (alive(this.preferred)) return this.preferred!;
      if (alive(this.attached)) return this.attached!;
      // Just connected, the preferred broker's retained birth may not have arrived yet.
      this.firstLook ??= performance.now();
      const preferredUnheard = this.preferred !== undefined && this.preferred !== '' && this.link.peers.get(this.preferred) === undefined;
      if (preferredUnheard && performance.now() - this.firstLook < PREFERRED_GRACE_MS && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const least = brokers.sort((a, b) => (a.heartbeat?.load ?? 0) - (b.heartbeat?.load ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))[0];
      if (least !== undefined) {
        this.attached = least.id;
        return least.id;
      }
      if (performance.now() > deadline) throw new Error(`no broker is alive in this cluster after ${this.brokerWaitMs} ms; start one (\`ucp broker\`) or check --hub and --cluster`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async put(name: string, bytes: Uint8Array): Promise<BodyOf<'data_put_result'>> {
    const at = this.link.now();
    const reply = await this.link.request(await this.broker(), 'data_put', { name: checkName(name), bytes, at: [at.wall, at.logical], writer: this.link.id });
    if (reply.kind !== 'data_put_result') throw new Error(`the broker answered ${reply.kind} to a put`);
    return reply.body;
  }

  async get(name: string): Promise<DataItem> {
    const reply = await this.link.request(await this.broker(), 'data_get', { name: checkName(name), prefix: false, limit: 1 });
    const item = reply.kind === 'data_items' ? reply.body.items[0] : undefined;
    if (item === undefined) throw new Error(`no data named "${name}"`);
    return item;
  }

  /** The name and every name below it, with their bytes. */
  async *getPrefix(name: string): AsyncGenerator<DataItem> {
    checkName(name);
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
    if (prefix !== undefined) checkName(prefix);
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
    const at = this.link.now();
    if ('jobId' in target && !JOB_ID_PATTERN.test(target.jobId)) throw new Error(`"${target.jobId}" is not a job id`);
    const what = 'name' in target ? { name: checkName(target.name) } : { job_id: target.jobId };
    const reply = await this.link.request(await this.broker(), 'data_delete', { ...what, at: [at.wall, at.logical], writer: this.link.id });
    if (reply.kind !== 'data_deleted') throw new Error(`the broker answered ${reply.kind} to a delete`);
    return reply.body.count;
  }
}
