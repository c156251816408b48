// お知らせ: whether and where the hub tells me by e-mail that a room has news (never what was
// written), quiet hours and a digest; and push notifications on this device (Web Push), which
// follow the same delay, quiet hours and digest.
import { useEffect, useState } from "preact/hooks";
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
      <PushOnThisDevice publicKey={current.data?.pushPublicKey} />
    </form>
  );
}

/** Whether this browser can take push notifications at all (https, a service worker). */
function pushSupported(): boolean {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** The hub's key as `pushManager.subscribe` wants it: the bytes of a base64url string. */
function keyBytes(base64url: string): Uint8Array<ArrayBuffer> {
  const b64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
  const text = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

async function currentSubscription(): Promise<PushSubscription | null> {
  const registration = await navigator.serviceWorker.ready;
  return registration.pushManager.getSubscription();
}

/** A subscription of this browser for the hub's key (an old one for another key is replaced). */
async function subscribe(publicKey: string): Promise<PushSubscription> {
  const registration = await navigator.serviceWorker.ready;
  const options = { userVisibleOnly: true, applicationServerKey: keyBytes(publicKey) };
  try {
    return await registration.pushManager.subscribe(options);
  } catch (e) {
    // Subscribed before with another key (the hub's key was renewed): start afresh.
    const old = await registration.pushManager.getSubscription();
    if (old === null) throw e;
    await old.unsubscribe();
    return registration.pushManager.subscribe(options);
  }
}

/**
 * 「この端末にプッシュ通知」: subscribing this browser is turning push on for it; turning it off
 * unsubscribes and tells the hub. Shown only when the hub sends push (it has a key).
 */
function PushOnThisDevice({ publicKey }: { publicKey: string | undefined }) {
  const [on, setOn] = useState<boolean | null>(null);
  const [denied, setDenied] = useState(false);
  useEffect(() => {
    if (!publicKey || !pushSupported()) return;
    currentSubscription().then((s) => setOn(s !== null), () => setOn(false));
  }, [publicKey]);
  const turnOn = useAction("プッシュ通知の登録", async (c, key) => {
    const subscription = (await subscribe(publicKey ?? "")).toJSON();
    await c.accounts.addPushSubscription({
      idempotencyKey: key,
      endpoint: subscription.endpoint ?? "",
      p256dh: subscription.keys?.p256dh ?? "",
      auth: subscription.keys?.auth ?? "",
    });
  });
  const turnOff = useAction("プッシュ通知の解除", async (c, key) => {
    const subscription = await currentSubscription();
    if (subscription === null) return;
    await c.accounts.removePushSubscription({ idempotencyKey: key, endpoint: subscription.endpoint });
    await subscription.unsubscribe();
  });
  if (!publicKey) return null;
  if (!pushSupported()) {
    return <p class="muted">この端末のブラウザはプッシュ通知に対応していません（https での接続が必要です）。</p>;
  }
  const toggle = async (wanted: boolean) => {
    setDenied(false);
    if (wanted) {
      if ((await Notification.requestPermission()) !== "granted") {
        setDenied(true);
        return;
      }
      if ((await turnOn.run()) !== undefined) setOn(true);
    } else if ((await turnOff.run()) !== undefined) {
      setOn(false);
    }
  };
  return (
    <fieldset class="plain" aria-label="プッシュ通知">
      <h2>お知らせ（プッシュ通知）</h2>
      <p class="muted">この端末に、部屋の名前だけを通知します。投稿の内容は送りません。送らない時間帯とまとめ設定はメールと同じです。</p>
      <label class="check">
        <input
          type="checkbox"
          checked={on === true}
          disabled={on === null || turnOn.busy || turnOff.busy}
          onChange={(e) => void toggle(e.currentTarget.checked)}
        />
        この端末にプッシュ通知
      </label>
      {denied && <ErrorBox message="通知が許可されませんでした。ブラウザの設定でこのサイトの通知を許可してください。" />}
      <ErrorBox message={turnOn.error ?? turnOff.error} />
    </fieldset>
  );
}
