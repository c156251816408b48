// The login page: login and password, then the authenticator's code when the account has one.
import { ErrorBox } from "./common";
import { useState } from "preact/hooks";
import { describe, needsSecondFactor } from "../api/errors";
import type { Hub } from "../api/hub";
import { idempotencyKey } from "../api/ids";
import type { GetMeResponse } from "../gen/kizuna/accounts/v1/account_service_pb";
import { Code, ConnectError } from "@connectrpc/connect";
import { href } from "./route";

/** Names the device in the session list (設定 → ログイン中の端末). */
function deviceName(): string {
  const ua = navigator.userAgent;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows" : /Mac/.test(ua) ? "Mac" : "PC";
  return `ブラウザ (${os})`;
}

export function Login({ hub, message, onSignedIn }: { hub: Hub; message: string | null; onSignedIn: (me: GetMeResponse) => void }) {
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [askCode, setAskCode] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const request = { idempotencyKey: idempotencyKey(), login: login.trim(), password, device: deviceName(), totpCode: askCode ? code.trim() : undefined };
      const answer = await hub.call((c) => c.accounts.login(request));
      hub.setToken(answer.token);
      onSignedIn(await hub.call((c) => c.accounts.getMe({})));
    } catch (err) {
      setError(loginError(err, askCode));
      if (needsSecondFactor(err)) setAskCode(true);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <h1 class="brand">Kizuna</h1>
      <p class="muted">在宅医療・介護連携ネットワーク</p>
      {message && (
        <p class="notice" role="status">
          {message}
        </p>
      )}
      <form onSubmit={submit} aria-label="ログイン">
        <label>
          ログインID
          <input name="login" autocomplete="username" required value={login} onInput={(e) => setLogin(e.currentTarget.value)} />
        </label>
        <label>
          パスワード
          <input name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {askCode && (
          <label>
            認証コード（6桁）
            <input name="totp" inputMode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
        )}
        <ErrorBox message={error} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "ログイン中…" : "ログイン"}
        </button>
      </form>
      <p>
        <a href={href("register")}>招待コードをお持ちの方：新規登録</a>
      </p>
    </main>
  );
}

/** Never says whether the login exists: a wrong login and a wrong password read the same. */
function loginError(e: unknown, codeWasSent: boolean): string {
  if (needsSecondFactor(e)) return "このアカウントは2段階認証が有効です。認証アプリの6桁のコードを入力してください。";
  const err = ConnectError.from(e);
  if (err.code === Code.Unauthenticated) {
    return codeWasSent
      ? "ログインできませんでした。ログインID・パスワード・認証コードを確認してください。"
      : "ログインIDまたはパスワードが正しくありません。";
  }
  return describe(e, "ログイン");
}
