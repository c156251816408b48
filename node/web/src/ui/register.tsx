// 新規登録: a professional registers with the invitation code their facility's admin issued;
// the account can log in once that admin approves it (設定 → 施設スタッフ).
import { useState } from "preact/hooks";
import { describe } from "../api/errors";
import type { Hub } from "../api/hub";
import { idempotencyKey } from "../api/ids";
import { Profession } from "../gen/kizuna/common/v1/types_pb";
import { ErrorBox, EnumOptions } from "./common";
import { PROFESSIONS } from "./labels";
import { usePasswordRule } from "./password";

export function Register({ hub, done }: { hub: Hub; done: (message: string) => void }) {
  const [form, setForm] = useState({ code: "", login: "", name: "", profession: Profession.NURSE, password: "", again: "" });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const rule = usePasswordRule(hub);
  const set = (change: Partial<typeof form>) => setForm({ ...form, ...change });
  const submit = async (e: Event) => {
    e.preventDefault();
    if (form.password !== form.again) return setError("確認用のパスワードが一致しません。");
    setBusy(true);
    setError(null);
    const request = {
      idempotencyKey: idempotencyKey(),
      invitationCode: form.code.trim(),
      login: form.login.trim(),
      displayName: form.name.trim(),
      profession: form.profession,
      password: form.password,
    };
    try {
      await hub.call((c) => c.accounts.register(request));
      done("登録しました。施設の管理者が承認すると、ログインできるようになります。");
    } catch (err) {
      setError(describe(err, "登録"));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1 class="brand">Kizuna</h1>
      <form onSubmit={submit} aria-label="新規登録">
        <h2>招待コードで新規登録</h2>
        <label>
          招待コード
          <input required autocomplete="off" value={form.code} onInput={(e) => set({ code: e.currentTarget.value })} />
        </label>
        <label>
          ログインID（半角英数字）
          <input required autocomplete="username" value={form.login} onInput={(e) => set({ login: e.currentTarget.value })} />
        </label>
        <label>
          氏名
          <input required autocomplete="name" value={form.name} onInput={(e) => set({ name: e.currentTarget.value })} />
        </label>
        <label>
          職種
          <select value={form.profession} onChange={(e) => set({ profession: Number(e.currentTarget.value) })}>
            <EnumOptions labels={PROFESSIONS} />
          </select>
        </label>
        <label>
          パスワード{rule && `（${rule}）`}
          <input type="password" autocomplete="new-password" required value={form.password} onInput={(e) => set({ password: e.currentTarget.value })} />
        </label>
        <label>
          パスワード（確認）
          <input type="password" autocomplete="new-password" required value={form.again} onInput={(e) => set({ again: e.currentTarget.value })} />
        </label>
        <ErrorBox message={error} />
        <button type="submit" class="primary" disabled={busy}>
          登録
        </button>
        <p>
          <a href="#/">ログイン画面へ戻る</a>
        </p>
      </form>
    </main>
  );
}
