import type { BodyOf, Role } from '../protocol/index.js';

export type DownReason = 'will' | 'graceful' | 'heartbeat_timeout' | 'restarted';

export interface PeerState {
  readonly id: string;
  role: Role;
  incarnation: number;
  alive: boolean;
  /** Local monotonic time (ms) of the last proof of life. */
  lastSeen: number;
  downReason?: DownReason;
  birth?: BodyOf<'birth'>;
  heartbeat?: BodyOf<'heartbeat'>;
}

/**
 * What changed about a peer. `up` with `restartedFrom` set means a new incarnation replaced an old one;
 * `up` with `rejoined` means the same incarnation came back, i.e. it was partitioned rather than restarted.
 */
export type PresenceEvent =
  | { type: 'up'; peer: Readonly<PeerState>; restartedFrom?: number; rejoined: boolean }
  | { type: 'down'; peer: Readonly<PeerState>; reason: DownReason; incarnation: number };

/**
 * Who is alive, from births, deaths and heartbeats. Pure bookkeeping: it is fed by the link and asked to
 * expire silent peers, so the rules can be tested without a hub.
 *
 * A death only counts for the incarnation it names: an older incarnation's last will (delivered late, as
 * after a fast restart) never marks the newer incarnation dead.
 */
export class PeerTable {
  private readonly table = new Map<string, PeerState>();
  staleIgnored = 0;
  /** Births refused because the table was full of live peers. */
  refused = 0;

  /**
   * @param capacity most peers tracked; when full, the longest-dead peer makes room, and a new peer is
   *   refused only if every tracked peer is alive (a flood of forged births cannot exhaust memory).
   */
  constructor(
    private readonly deadAfterMs: number,
    private readonly now: () => number = () => performance.now(),
    private readonly capacity = 10_000,
  ) {}

  get(id: string): Readonly<PeerState> | undefined {
    return this.table.get(id);
  }

  peers(): Readonly<PeerState>[] {
    return [...this.table.values()];
  }

  /** The live peers of one role. */
  alive(role: Role): Readonly<PeerState>[] {
    return this.peers().filter((p) => p.alive && p.role === role);
  }

  onBirth(id: string, role: Role, incarnation: number, birth: BodyOf<'birth'>): PresenceEvent[] {
    const events = this.proofOfLife(id, role, incarnation);
    const peer = this.table.get(id);
    if (peer !== undefined && peer.incarnation === incarnation) peer.birth = birth;
    return events;
  }

  onHeartbeat(id: string, role: Role, incarnation: number, heartbeat: BodyOf<'heartbeat'>): PresenceEvent[] {
    const events = this.proofOfLife(id, role, incarnation);
    const peer = this.table.get(id);
    if (peer !== undefined && peer.incarnation === incarnation) peer.heartbeat = heartbeat;
    return events;
  }

  /** Any other valid message from a peer also proves it is alive, but only for the incarnation we know. */
  touch(id: string, incarnation: number): void {
    const peer = this.table.get(id);
    if (peer !== undefined && peer.alive && peer.incarnation === incarnation) peer.lastSeen = this.now();
  }

  onDeath(id: string, role: Role, incarnation: number, graceful: boolean): PresenceEvent[] {
    const peer = this.table.get(id);
    if (peer === undefined) {
      // A retained death of a node we never saw alive: remember it so an older birth cannot resurrect it.
      if (this.makeRoom()) this.table.set(id, { id, role, incarnation, alive: false, lastSeen: this.now(), downReason: graceful ? 'graceful' : 'will' });
      return [];
    }
    if (incarnation < peer.incarnation) {
      this.staleIgnored++;
      return [];
    }
    const wasAlive = peer.alive;
    peer.incarnation = incarnation;
    peer.role = role;
    peer.alive = false;
    peer.downReason = graceful ? 'graceful' : 'will';
    return wasAlive ? [{ type: 'down', peer, reason: peer.downReason, incarnation }] : [];
  }

  /**
   * Marks peers dead whose heartbeats stopped for longer than the limit (power or radio cut, SIGSTOP).
   * `watched`: the roles whose heartbeats this node receives; the others are left to their last wills.
   */
  expire(watched: (role: Role) => boolean = () => true): PresenceEvent[] {
    const events: PresenceEvent[] = [];
    const limit = this.now() - this.deadAfterMs;
    for (const peer of this.table.values()) {
      if (peer.alive && watched(peer.role) && peer.lastSeen < limit) {
        peer.alive = false;
        peer.downReason = 'heartbeat_timeout';
        events.push({ type: 'down', peer, reason: 'heartbeat_timeout', incarnation: peer.incarnation });
      }
    }
    return events;
  }

  /**
   * This node could not hear anyone for a while (its own connection to the hub was down): a peer's silence
   * over that time proves nothing, so every live peer gets the full limit from now to show itself again.
   */
  heardAgain(): void {
    const now = this.now();
    for (const peer of this.table.values()) if (peer.alive) peer.lastSeen = Math.max(peer.lastSeen, now);
  }

  /**
   * Milliseconds until the first live peer (of a watched role) would expire if it stays silent; undefined
   * when none is alive. A node checks then, rather than polling: heartbeats that arrive meanwhile move it.
   */
  msUntilExpiry(watched: (role: Role) => boolean = () => true): number | undefined {
    let first: number | undefined;
    for (const peer of this.table.values()) {
      if (peer.alive && watched(peer.role) && (first === undefined || peer.lastSeen < first)) first = peer.lastSeen;
    }
    return first === undefined ? undefined : Math.max(0, first + this.deadAfterMs - this.now());
  }

  /** Drops a peer from the table, e.g. one whose retained presence an operator cleared. */
  forget(id: string): boolean {
    return this.table.delete(id);
  }

  /** True if one more peer fits, evicting the peer dead the longest if needed. */
  private makeRoom(): boolean {
    if (this.table.size < this.capacity) return true;
    let oldest: PeerState | undefined;
    for (const p of this.table.values()) {
      if (!p.alive && (oldest === undefined || p.lastSeen < oldest.lastSeen)) oldest = p;
    }
    if (oldest === undefined) return false;
    this.table.delete(oldest.id);
    return true;
  }

  private proofOfLife(id: string, role: Role, incarnation: number): PresenceEvent[] {
    const now = this.now();
    const peer = this.table.get(id);
    if (peer === undefined) {
      if (!this.makeRoom()) {
        this.refused++;
        return [];
      }
      const fresh: PeerState = { id, role, incarnation, alive: true, lastSeen: now };
      this.table.set(id, fresh);
      return [{ type: 'up', peer: fresh, rejoined: false }];
    }
    if (incarnation < peer.incarnation) {
      this.staleIgnored++;
      return [];
    }
    if (incarnation > peer.incarnation) {
      const events: PresenceEvent[] = [];
      const previous = peer.incarnation;
      if (peer.alive) events.push({ type: 'down', peer: { ...peer }, reason: 'restarted', incarnation: previous });
      peer.incarnation = incarnation;
      peer.role = role;
      peer.alive = true;
      peer.lastSeen = now;
      delete peer.downReason;
      delete peer.birth;
      delete peer.heartbeat;
      events.push({ type: 'up', peer, restartedFrom: previous, rejoined: false });
      return events;
    }
    if (!peer.alive && peer.downReason === 'graceful') {
      // A clean shutdown is final for its incarnation; a straggling heartbeat must not revive it.
      this.staleIgnored++;
      return [];
    }
    peer.lastSeen = now;
    if (peer.alive) return [];
    peer.alive = true;
    peer.role = role;
    delete peer.downReason;
    return [{ type: 'up', peer, rejoined: true }];
  }
}
