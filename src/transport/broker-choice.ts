import type { NodeLink } from './node-link.js';

/** Told when a request has to wait for something (a broker, a datastore); returns the function ending the wait. */
export type WaitNotice = (what: string) => () => void;

/** How long a node waits to hear from its preferred broker before attaching to another. */
const PREFERRED_GRACE_MS = 2_000;

/**
 * Which broker a node that is not a broker talks to: the preferred one (node.broker) while it is alive,
 * else the one it attached to before while that lives, else the least loaded by its heartbeats (ties by
 * id). A lost broker is replaced at the next request.
 */
export class BrokerChoice {
  private attached?: string;
  /** When this node first looked for a broker: its preferred one gets a moment to be heard from. */
  private firstLook?: number;

  constructor(
    private readonly link: NodeLink,
    /** How long to wait for a broker to appear before giving up. */
    private readonly waitMs: number,
    private preferred?: string,
    /** Says what the node waits for, e.g. on the terminal; silent by default. */
    private readonly waiting: WaitNotice = () => () => undefined,
  ) {}

  prefer(broker: string | undefined): void {
    this.preferred = broker;
  }

  /** A live broker now, if there is one, without waiting. */
  current(): string | undefined {
    const brokers = this.link.peers.alive('broker');
    const alive = (id: string | undefined) => id !== undefined && id !== '' && brokers.some((p) => p.id === id);
    if (alive(this.preferred)) return this.preferred;
    if (alive(this.attached)) return this.attached;
    const least = brokers.sort((a, b) => (a.heartbeat?.load ?? 0) - (b.heartbeat?.load ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))[0];
    return least?.id;
  }

  async broker(): Promise<string> {
    const deadline = performance.now() + this.waitMs;
    let done: (() => void) | undefined;
    try {
      return await this.find(deadline, () => (done ??= this.waiting(`waiting for a broker (up to ${Math.round(this.waitMs / 1_000)} s; start one with \`ucp broker\`)`)));
    } finally {
      done?.();
    }
  }

  private async find(deadline: number, waiting: () => void): Promise<string> {
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
      const least = this.current();
      if (least !== undefined) {
        this.attached = least;
        return least;
      }
      if (performance.now() > deadline) throw new Error(`no broker is alive in this cluster after ${this.waitMs} ms; start one (\`ucp broker\`) or check --hub and --cluster`);
      waiting();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
