// 設定: who I am, my facility's staff (for its admins), e-mail notices, my devices (sessions) and stopping one, changing my password, the second
// factor (enrolment with a QR code), and logging out.
import qrcode from "qrcode-generator";
import { useState } from "preact/hooks";
import { useApp } from "./app-context";
import { ErrorBox, Loading, Notice, PageTitle, useAction, useLoad } from "./common";
import { idempotencyKey } from "../api/ids";
import { forgetDrafts } from "./composer";
import { role, when } from "./labels";
import { Notifications } from "./notifications";
import { PasswordForm } from "./password";
import { Staff } from "./staff";

export function SettingsView() {
  const { me } = useApp();
  return (
    <section>
      <PageTitle title="設定" />
      <div class="card">
        <h2>アカウント</h2>
        <p>
          {me.displayName}（{me.login}）<span class="muted"> {role(me.kind, me.profession)} {me.facilityName}</span>
        </p>
        <p class="muted">ハブ: {me.hub}</p>
        <Logout />
      </div>
      {me.facilityAdmin && me.facilityId !== undefined && <Staff facilityId={me.facilityId} />}
      <Notifications />
      <Devices />
      <Password />
      <SecondFactor />
    </section>
  );
}

/** Logs out here in any case; ends the session on the hub when a node answers. */
function Logout() {
  const { hub, me, signOut } = useApp();
  const [busy, setBusy] = useState(false);
  const logout = async () => {
    setBusy(true);
    const key = idempotencyKey();
    const ended = await hub.call((c) => c.accounts.logout({ idempotencyKey: key })).then(
      () => true,
      () => false,
    );
    forgetDrafts(me.accountId);
    signOut(ended ? "ログアウトしました。" : "この端末からログアウトしました。サーバーに届かなかったため、ログインは他の端末の「ログイン中の端末」から終了できます。");
  };
  return (
    <button class="secondary" disabled={busy} onClick={logout}>
      ログアウト
    </button>
  );
}

function Devices() {
  const sessions = useLoad((c) => c.accounts.listSessions({ pageSize: 50 }), []);
  const revoke = useAction("端末のログアウト", (c, key, id: string) => c.accounts.revokeSession({ idempotencyKey: key, sessionId: id }));
  const stop = async (id: string) => {
    if (await revoke.run(id)) sessions.reload();
  };
  return (
    <div class="card" aria-label="ログイン中の端末">
      <h2>ログイン中の端末</h2>
      <Loading loaded={sessions} />
      <ul class="plain">
        {sessions.data?.sessions
          .filter((s) => !s.revoked)
          .map((s) => (
            <li class="row">
              <span class="grow">
                {s.device || "不明な端末"} <span class="muted">{when(s.createdAt)} から</span>
                {s.current && <span class="tag">この端末</span>}
              </span>
              {!s.current && (
                <button class="secondary small" disabled={revoke.busy} onClick={() => stop(s.sessionId)}>
                  ログアウトさせる
                </button>
              )}
            </li>
          ))}
      </ul>
      <ErrorBox message={revoke.error} />
    </div>
  );
}

function Password() {
  const { hub, signOut } = useApp();
  const [done, setDone] = useState(false);
  return (
    <div class="card">
      <h2>パスワードの変更</h2>
      <PasswordForm hub={hub} signOut={signOut} onChanged={() => setDone(true)} />
      {done && <Notice>パスワードを変更しました。他の端末はログアウトされました。</Notice>}
    </div>
  );
}

function SecondFactor() {
  const { me } = useApp();
  const [enabled, setEnabled] = useState(me.totpEnabled);
  const [secret, setSecret] = useState<{ secretBase32: string; otpauthUri: string } | null>(null);
  const [code, setCode] = useState("");
  const begin = useAction("2段階認証の設定", (c, key) => c.accounts.beginTotp({ idempotencyKey: key }));
  const confirm = useAction("2段階認証の有効化", (c, key) => c.accounts.confirmTotp({ idempotencyKey: key, code: code.trim() }));
  const disable = useAction("2段階認証の解除", (c, key) => c.accounts.disableTotp({ idempotencyKey: key, code: code.trim() }));
  const start = async () => setSecret((await begin.run()) ?? null);
  const finish = async (e: Event) => {
    e.preventDefault();
    if (enabled) {
      if (await disable.run()) (setEnabled(false), setCode(""));
    } else if (await confirm.run()) {
      setEnabled(true);
      setSecret(null);
      setCode("");
    }
  };
  return (
    <div class="card" aria-label="2段階認証">
      <h2>2段階認証</h2>
      <p>{enabled ? "有効です。ログインには認証アプリのコードが必要です。" : "無効です。認証アプリ（Google Authenticator など）で有効にできます。"}</p>
      {!enabled && !secret && (
        <button class="secondary" disabled={begin.busy} onClick={start}>
          設定を始める
        </button>
      )}
      {secret && (
        <div>
          <p>認証アプリでこのQRコードを読み取ってください。読み取れない場合はキーを入力してください。</p>
          <img class="qr" alt="2段階認証のQRコード" src={qrDataUrl(secret.otpauthUri)} width={200} height={200} />
          <p>
            キー: <code>{secret.secretBase32}</code>
          </p>
        </div>
      )}
      {(enabled || secret) && (
        <form onSubmit={finish} class="row">
          <label class="grow">
            認証アプリの6桁のコード
            <input inputMode="numeric" pattern="[0-9]{6}" required autocomplete="one-time-code" value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
          <button class={enabled ? "secondary" : "primary"}>{enabled ? "解除" : "有効にする"}</button>
        </form>
      )}
      <ErrorBox message={begin.error ?? confirm.error ?? disable.error} />
    </div>
  );
}

/** The QR code drawn here, as an image: the secret never leaves the page for a QR service. */
function qrDataUrl(text: string): string {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  return qr.createDataURL(5, 2);
}
