// What a failed call means for the user, in Japanese. The server's own messages are in English
// for operators and logs; the page never shows them alone, only as a detail.
import { Code, ConnectError } from "@connectrpc/connect";

/** A session that ended elsewhere: expired, ended from another device, or the account stopped. */
export const SESSION_ENDED = "ログインが終了しました（有効期限切れ・他の端末からのログアウト・利用停止のいずれか）。もう一度ログインしてください。";

/**
 * The node did not answer (stopped, unreachable, too slow, or without a quorum): another node
 * may. A failed fetch reaches us as UNKNOWN caused by a TypeError; any other UNKNOWN is an
 * answer, not a missing one.
 */
export function isUnreachable(e: unknown): boolean {
  const err = ConnectError.from(e);
  if (err.code === Code.Unknown) return err.cause instanceof TypeError;
  return err.code === Code.Unavailable || err.code === Code.DeadlineExceeded;
}

/** The session is gone: ended, expired, revoked on another device, or the account stopped. */
export function isSessionEnded(e: unknown): boolean {
  return ConnectError.from(e).code === Code.Unauthenticated;
}

/** Login answered that the account has a second factor and no code was sent. */
export function needsSecondFactor(e: unknown): boolean {
  const err = ConnectError.from(e);
  // The server's wording is its contract here (accounts.rs: "this account has a second factor").
  return err.code === Code.Unauthenticated && err.rawMessage.includes("second factor");
}

/** A message for a failed action (`what`, e.g. 「投稿」), never blaming the user for the network. */
export function describe(e: unknown, what: string): string {
  const err = ConnectError.from(e);
  const detail = err.rawMessage ? `（${err.rawMessage}）` : "";
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Unknown:
      return `${what}ができませんでした。サーバーに接続できません。通信状態を確認して、もう一度お試しください。`;
    case Code.Unauthenticated:
      return SESSION_ENDED;
    case Code.PermissionDenied:
      return `${what}の権限がありません。${detail}`;
    case Code.NotFound:
      return `対象が見つかりません。削除されたか、参加していない部屋です。`;
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.AlreadyExists:
    case Code.OutOfRange:
      return `${what}ができませんでした。入力内容を確認してください。${detail}`;
    case Code.ResourceExhausted:
      return `${what}ができませんでした。しばらく待ってからお試しください。`;
    default:
      return `${what}ができませんでした。${detail}`;
  }
}

/**
 * A failed upload: the hub's refusal of the file itself (its type, its size, the quota) is
 * shown with the hub's own reason, which is the only place the user learns which rule applied;
 * anything else reads as any failed action.
 */
export function describeUpload(e: unknown): string {
  const err = ConnectError.from(e);
  switch (err.code) {
    case Code.InvalidArgument:
    case Code.ResourceExhausted:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return `添付できませんでした: ${err.rawMessage || "このファイルは受け付けられません。"}`;
    default:
      return describe(e, "添付");
  }
}
