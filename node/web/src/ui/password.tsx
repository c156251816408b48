// Changing one's password: in 設定, and as the only page of an account whose password was issued
// by an admin (or, for a family account, by the patient's team) until its holder replaces it;
// and the hub's rule for new passwords, as the forms tell it (registration too).
import { useEffect, useState } from "preact/hooks";
import type { Hub } from "../api/hub";
import type { GetPasswordPolicyResponse } from "../gen/kizuna/accounts/v1/account_service_pb";
import { ErrorBox, Notice, useActionOn } from "./common";

/** The hub's rule for new passwords, as the form tells it (null until it is read). */
export function usePasswordRule(hub: Hub): string | null {
  const [rule, setRule] = useState<GetPasswordPolicyResponse | null>(null);
  useEffect(() => void hub.call((c) => c.accounts.getPasswordPolicy({})).then(setRule, () => undefined), [hub]);
  if (!rule) return null;
  return rule.minKinds > 1 ? `${rule.minChars}文字以上、英小文字・英大文字・数字・記号などのうち${rule.minKinds}種類以上` : `${rule.minChars}文字以上`;
}

export function PasswordForm({ hub, signOut, onChanged }: { hub: Hub; signOut: (reason?: string) => void; onChanged: () => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [mismatch, setMismatch] = useState(false);
  const rule = usePasswordRule(hub);
  const change = useActionOn(hub, signOut, "パスワードの変更", (c, key) => c.accounts.changePassword({ idempotencyKey: key, currentPassword: current, newPassword: next }));
  const submit = async (e: Event) => {
    e.preventDefault();
    setMismatch(next !== again);
    if (next !== again) return;
    if (await change.run()) (setCurrent(""), setNext(""), setAgain(""), onChanged());
  };
  return (
    <form onSubmit={submit} aria-label="パスワードの変更">
      <label>
        現在のパスワード
        <input type="password" autocomplete="current-password" required value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
      </label>
      <label>
        新しいパスワード{rule && `（${rule}）`}
        <input type="password" autocomplete="new-password" required value={next} onInput={(e) => setNext(e.currentTarget.value)} />
      </label>
      <label>
        新しいパスワード（確認）
        <input type="password" autocomplete="new-password" required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
      </label>
      <ErrorBox message={mismatch ? "確認用のパスワードが一致しません。" : null} />
      <ErrorBox message={change.error} />
      <button class="primary" disabled={change.busy}>
        変更
      </button>
    </form>
  );
}

/** The whole page while the password is an issued one: the hub answers nothing else. */
export function IssuedPasswordPage({ hub, name, signOut, onChanged }: { hub: Hub; name: string; signOut: (reason?: string) => void; onChanged: () => void }) {
  return (
    <main class="login">
      <h1 class="brand">Kizuna</h1>
      <Notice>
        {name} さん、このパスワードは管理者（またはご家族の場合は担当チーム）が発行したものです。ご自身だけが知る新しいパスワードに変更してください。変更するまで、ほかの画面は使えません。
      </Notice>
      <PasswordForm hub={hub} signOut={signOut} onChanged={onChanged} />
      <button class="link" onClick={() => signOut()}>
        ログアウト
      </button>
    </main>
  );
}
