/** What to send the field broker after a CONNACK. */
export interface SubscriptionPlan {
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
}

/**
 * The subscriptions to make on a connection. A resumed session (CONNACK session present) still holds what
 * was subscribed before, and subscribing again is not free: the broker sends every matching retained
 * message again [MQTT-3.8.4-3], which a bridge would store as new readings. So only what the
 * configuration added is subscribed, and what it dropped unsubscribed. `saved` is what the broker last
 * granted in full (undefined: not known); without a session everything is subscribed.
 */
export function planSubscriptions(sessionPresent: boolean, saved: readonly string[] | undefined, wanted: readonly string[]): SubscriptionPlan {
  if (!sessionPresent || saved === undefined) return { subscribe: [...wanted], unsubscribe: [] };
  return { subscribe: wanted.filter((f) => !saved.includes(f)), unsubscribe: saved.filter((f) => !wanted.includes(f)) };
}
