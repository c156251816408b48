// Uploading one file to the hub in unary parts (AttachmentService.UploadPart): gRPC-Web carries
// no client streams. Every part goes through Hub.call, so a node that stops answering mid-file
// is left for another; that node answers how much of the file it holds (`received`, 0 when it
// has none of it) and the upload continues from there. One idempotency key per file, kept
// across retries: the hub answers a retried upload with the first one's attachment.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Attachment } from "../gen/kizuna/common/v1/types_pb";
import type { Hub } from "./hub";

/** Bytes per part (the hub takes up to 1 MiB; smaller parts show progress and fail over sooner). */
export const PART_BYTES = 512 * 1024;
/**
 * Larger files are refused before they are read: the page holds the whole file in memory to
 * hash it. The hub's own cap is lower (a one-minute video is at most 100 MiB) and says so.
 */
export const MAX_FILE_BYTES = 200 * 1024 * 1024;
/**
 * How long one part may take. Longer than other calls' 8 s: a part is 512 KiB of the phone's
 * uplink, which in a patient's home can be slower than 64 KiB/s, and a part cut off by the
 * deadline is sent again from scratch on another node.
 */
const PART_TIMEOUT_MS = 30_000;
/** Answers in a row that did not take the upload further: the nodes disagree, give up. */
const MAX_STALLS = 3;
/** Between questions whether a complete file is stored yet (a large one takes a while). */
const STORED_POLL_MS = 1_000;
/** How long a complete file may take to be stored before the page gives up. */
const MAX_STORING_MS = 10 * 60_000;

export interface UploadOptions {
  /** The file's idempotency key: the same on every retry of this file. */
  key: string;
  /** How many bytes the hub holds so far. */
  onProgress: (received: number) => void;
  /** Removing the file before it is done stops its upload between parts. */
  signal: AbortSignal;
}

/** Uploads `file`; the attachment it became, or the hub's refusal as a ConnectError. */
export async function uploadFile(hub: Hub, file: File, options: UploadOptions): Promise<Attachment> {
  checkSize(file);
  const bytes = new Uint8Array(await file.arrayBuffer());
  const header = { idempotencyKey: options.key, name: file.name, size: BigInt(bytes.length), sha256: await sha256Hex(bytes) };
  let offset = 0;
  let stalls = 0;
  let storingSince: number | undefined;
  for (;;) {
    if (options.signal.aborted) throw new ConnectError("the file was removed", Code.Canceled);
    const chunk = bytes.subarray(offset, offset + PART_BYTES);
    const part = { header, offset: BigInt(offset), chunk };
    const answer = await hub.call((c) => c.attachments.uploadPart(part, { signal: options.signal, timeoutMs: PART_TIMEOUT_MS }));
    if (answer.attachment) return answer.attachment;
    const received = Number(answer.received);
    if (received === bytes.length) {
      // Every byte arrived; the hub is still storing the file: ask again (an empty part).
      storingSince ??= Date.now();
      if (Date.now() - storingSince > MAX_STORING_MS) {
        throw new ConnectError("ファイルの保存が終わりませんでした。もう一度お試しください。", Code.DeadlineExceeded);
      }
      await new Promise((resolve) => setTimeout(resolve, STORED_POLL_MS));
      offset = received;
      continue;
    }
    storingSince = undefined;
    stalls = received > offset ? 0 : stalls + 1;
    if (stalls > MAX_STALLS || received > bytes.length) {
      throw new ConnectError("アップロードが進みませんでした。もう一度お試しください。", Code.Aborted);
    }
    offset = received;
    options.onProgress(received);
  }
}

/** Refusals the page can make itself, worded as the hub's (shown as 「添付できませんでした: …」). */
function checkSize(file: File): void {
  if (file.size === 0) throw new ConnectError("空のファイルです。", Code.InvalidArgument);
  if (file.size > MAX_FILE_BYTES) throw new ConnectError("ファイルが大きすぎます。", Code.ResourceExhausted);
}

/** Lower-case hex SHA-256, as the hub checks it. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
