// The handshake's proofs (docs/protocol.md, section 9).

import { createHmac } from "node:crypto";

export const NONCE_SIZE = 32;
export const ROLE_INSTANCE = "spear-auth-v1 instance";
export const ROLE_AGENT = "spear-auth-v1 agent";

/** HMAC-SHA256(secret, role || 0x00 || nonce || clientNonce || instanceId). */
export function proof(secret: Uint8Array, role: string, nonce: Uint8Array, clientNonce: Uint8Array, instanceId: string): Buffer {
  return createHmac("sha256", secret)
    .update(role)
    .update(Buffer.from([0]))
    .update(nonce)
    .update(clientNonce)
    .update(instanceId, "utf8")
    .digest();
}
