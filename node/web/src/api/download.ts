// Downloading attachments (AttachmentService.Download, a server stream) into memory only:
// nothing is written to the device's storage (no IndexedDB, no Cache API), as the hub's
// security rule asks. A stream cut by a node that stops answering resumes on another node
// from the bytes already received.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Attachment } from "../gen/kizuna/common/v1/types_pb";
import { Variant, type DownloadResponse } from "../gen/kizuna/attachments/v1/attachment_service_pb";
import type { Clients, Hub } from "./hub";

export { Variant };

/**
 * A stream that sends nothing for this long is taken as a node that does not answer. (A whole
 * video takes longer than any fixed deadline, so the stream has none; silence is what counts.)
 */
const IDLE_MS = 8000;
/** Small thumbnails kept in memory, at most this many (a long timeline's worth). */
const THUMBNAILS_KEPT = 300;
/** How long a saved file's object URL lives: the browser has started the download by then. */
const SAVE_URL_MS = 60_000;

interface Received {
  parts: Uint8Array<ArrayBuffer>[];
  length: number;
  total?: number;
  contentType: string;
}

/** The bytes of `variant` of attachment `id`, as a Blob of their type. */
export async function downloadBlob(hub: Hub, id: bigint, variant: Variant): Promise<Blob> {
  const got: Received = { parts: [], length: 0, contentType: "" };
  await hub.call((c) => readFrom(c, id, variant, got));
  if (got.total !== undefined && got.length !== got.total) {
    throw new ConnectError("ファイルの途中で受信が終わりました。", Code.DataLoss);
  }
  const type = imageType(got.parts[0]) ?? (variant === Variant.ORIGINAL ? got.contentType : "");
  return new Blob(got.parts, { type });
}

/** Reads the stream from where `got` stands (0 on the first node, further on a retry). */
async function readFrom(c: Clients, id: bigint, variant: Variant, got: Received): Promise<void> {
  const idle = new AbortController();
  let silent = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ((silent = true), idle.abort()), IDLE_MS);
  };
  arm();
  try {
    const stream = c.attachments.download({ attachmentId: id, variant, offset: BigInt(got.length) }, { signal: idle.signal, timeoutMs: 0 });
    for await (const message of stream) {
      arm();
      take(got, message);
    }
  } catch (e) {
    // Silence reads as a node that does not answer, so Hub.call moves on to another.
    throw silent ? new ConnectError("no data", Code.DeadlineExceeded) : e;
  } finally {
    clearTimeout(timer);
  }
}

function take(got: Received, message: DownloadResponse): void {
  // The size is the whole variant's: kept from the first stream, a resumed one says the same.
  if (got.total === undefined && message.size > 0n) got.total = Number(message.size);
  if (message.attachment && !got.contentType) got.contentType = message.attachment.contentType;
  if (message.chunk.length > 0) {
    got.parts.push(message.chunk as Uint8Array<ArrayBuffer>);
    got.length += message.chunk.length;
  }
}

/**
 * The image type of a thumbnail's bytes (the hub encodes thumbnails itself; the attachment's
 * content type is the original's). Undefined for anything else.
 */
function imageType(head: Uint8Array | undefined): string | undefined {
  if (!head) return undefined;
  const starts = (...b: number[]) => b.every((v, i) => head[i] === v);
  if (starts(0xff, 0xd8, 0xff)) return "image/jpeg";
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "image/png";
  if (starts(0x52, 0x49, 0x46, 0x46) && String.fromCharCode(...head.subarray(8, 12)) === "WEBP") return "image/webp";
  if (starts(0x47, 0x49, 0x46)) return "image/gif";
  return undefined;
}

/**
 * A `data:` URL of the image: the page's Content-Security-Policy lets images come from the
 * page's own origin and `data:` only (img-src 'self' data:), not from `blob:` URLs.
 */
export function dataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error ?? new Error("FileReader failed"));
    reader.readAsDataURL(blob);
  });
}

const thumbnails = new Map<bigint, Promise<string>>();

/** The small thumbnail of photo `id`, fetched once per page and kept in memory only. */
export function smallThumbnail(hub: Hub, id: bigint): Promise<string> {
  const kept = thumbnails.get(id);
  if (kept) return kept;
  const url = downloadBlob(hub, id, Variant.SMALL).then(dataUrl);
  // A failed fetch is not kept: the next showing tries again.
  url.catch(() => thumbnails.delete(id));
  thumbnails.set(id, url);
  // Oldest first out (a Map iterates in insertion order).
  if (thumbnails.size > THUMBNAILS_KEPT) thumbnails.delete(thumbnails.keys().next().value as bigint);
  return url;
}

/** Forgets every kept thumbnail (logging out: the next person on this browser sees none). */
export function forgetThumbnails(): void {
  thumbnails.clear();
}

/** Hands `blob` to the browser's download as `name`. */
export function saveAs(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.rel = "noopener";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), SAVE_URL_MS);
}

/** The attachment is a photo the hub made thumbnails of. */
export const isPhoto = (a: Attachment): boolean => a.hasThumbnails;
