// Idempotency keys: every write carries one, so a write retried on another node after a
// timeout is applied once (the hub remembers the key), never twice and never lost.
export function idempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
