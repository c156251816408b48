// お知らせ: whether and where the hub tells me by e-mail that a room has news (never what was
// written), quiet hours and a digest.
import { useState } from "preact/hooks";
import type { NotificationSettings } from "../gen/kizuna/accounts/v1/account_service_pb";
import { ErrorBox, Loading, Notice, useAction, useLoad } from "./common";

interface Form {
  email: string;
  enabled: boolean;
  quiet: boolean;
  start: number;
  end: number;
  digest: boolean;
}

function formOf(s: NotificationSettings | undefined): Form {
  return {
    email: s?.email ?? "",
    enabled: s?.emailEnabled ?? false,
    quiet: s?.quietHours !== undefined,
    start: s?.quietHours?.startHour ?? 22,
    end: s?.quietHours?.endHour ?? 7,
    digest: s?.digest ?? false,
  };
}

const HOURS = Array.from({ length: 24 }, (_, h) => h);

export function Notifications() {
  const current = useLoad((c) => c.accounts.getNotificationSettings({}), []);
  // Filled once from the hub: a later reload (the live stream's resync) must not wipe what the
  // user is typing.
  const [edited, setEdited] = useState<Form | null>(null);
  const [saved, setSaved] = useState(false);
  const form = edited ?? formOf(current.data?.settings);
  const set = (change: Partial<Form>) => (setEdited({ ...form, ...change }), setSaved(false));
  const save = useAction("お知らせ設定の保存", (c, key) =>
    c.accounts.setNotificationSettings({
      idempotencyKey: key,
      settings: {
        email: form.email.trim(),
        emailEnabled: form.enabled,
        quietHours: form.quiet ? { startHour: form.start, endHour: form.end } : undefined,
        digest: form.digest,
      },
    }),
  );
  const submit = async (e: Event) => {
    e.preventDefault();
    if (await save.run()) setSaved(true);
  };
  return (
    <form class="card" onSubmit={submit} aria-label="お知らせ">
      <h2>お知らせ（メール）</h2>
      <p class="muted">未読の投稿があると、部屋の名前とリンクだけをメールでお知らせします。投稿の内容は送りません。</p>
      <Loading loaded={current} />
      <fieldset disabled={current.data === undefined} class="plain">
        <label>
          メールアドレス
          <input type="email" maxLength={254} autocomplete="email" value={form.email} onInput={(e) => set({ email: e.currentTarget.value })} />
        </label>
        <label class="check">
          <input type="checkbox" checked={form.enabled} onChange={(e) => set({ enabled: e.currentTarget.checked })} />
          メールで知らせる
        </label>
        <label class="check">
          <input type="checkbox" checked={form.digest} onChange={(e) => set({ digest: e.currentTarget.checked })} />
          まとめて知らせる（部屋ごとではなく一通に）
        </label>
        <label class="check">
          <input type="checkbox" checked={form.quiet} onChange={(e) => set({ quiet: e.currentTarget.checked })} />
          送らない時間帯を設定する
        </label>
        {form.quiet && (
          <div class="row wrap">
            <label>
              開始
              <select value={form.start} onChange={(e) => set({ start: Number(e.currentTarget.value) })}>
                {HOURS.map((h) => (
                  <option value={h}>{h}時</option>
                ))}
              </select>
            </label>
            <label>
              終了
              <select value={form.end} onChange={(e) => set({ end: Number(e.currentTarget.value) })}>
                {HOURS.map((h) => (
                  <option value={h}>{h}時</option>
                ))}
              </select>
            </label>
          </div>
        )}
      </fieldset>
      <ErrorBox message={save.error} />
      {saved && <Notice>お知らせの設定を保存しました。</Notice>}
      <button class="primary" disabled={save.busy || current.data === undefined}>
        保存
      </button>
    </form>
  );
}
