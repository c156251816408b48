// Signed out: the login page. Signed in: the shell with its views, one live stream per tab.
import { ErrorBox } from "./common";
import { useEffect, useMemo, useState } from "preact/hooks";
import { forgetThumbnails } from "../api/download";
import { describe, isSessionEnded, SESSION_ENDED } from "../api/errors";
import { Hub } from "../api/hub";
import { Live } from "../api/live";
import type { GetMeResponse } from "../gen/kizuna/accounts/v1/account_service_pb";
import { App, type AppContext } from "./app-context";
import { Login } from "./login";
import { IssuedPasswordPage } from "./password";
import { Register } from "./register";
import { go, useRoute } from "./route";
import { Shell } from "./shell";

export function Root() {
  const hub = useMemo(() => new Hub(location.origin), []);
  const [me, setMe] = useState<GetMeResponse | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [checking, setChecking] = useState(hub.token !== null);
  const [startupError, setStartupError] = useState<string | null>(null);

  const signOut = (reason?: string) => {
    hub.setToken(null);
    // Photos seen in this session are not shown to whoever signs in next on this browser.
    forgetThumbnails();
    setMe(null);
    setMessage(reason ?? null);
  };

  // A token kept from an earlier visit: still good? No answer is no verdict: keep it and retry.
  const check = () => {
    setStartupError(null);
    setChecking(true);
    hub
      .call((c) => c.accounts.getMe({}))
      .then(setMe)
      .catch((e) => (isSessionEnded(e) ? signOut(SESSION_ENDED) : setStartupError(describe(e, "ログイン状態の確認"))))
      .finally(() => setChecking(false));
  };
  useEffect(() => void (hub.token && check()), []);

  if (checking) return <p class="muted center">読み込み中…</p>;
  if (startupError) {
    return (
      <main class="login">
        <ErrorBox message={startupError} />
        <button class="primary" onClick={check}>
          再試行
        </button>
      </main>
    );
  }
  if (!me) return <SignedOut hub={hub} message={message} onSignedIn={(m) => (setMessage(null), setMe(m))} />;
  if (me.passwordChangeRequired) return <IssuedPasswordPage hub={hub} name={me.displayName} signOut={signOut} onChanged={check} />;
  return <SignedIn hub={hub} me={me} signOut={signOut} />;
}

/** The login page, or registration with an invitation code (#/register). */
function SignedOut({ hub, message, onSignedIn }: { hub: Hub; message: string | null; onSignedIn: (me: GetMeResponse) => void }) {
  const route = useRoute();
  const [note, setNote] = useState<string | null>(null);
  if (route[0] === "register") return <Register hub={hub} done={(m) => (setNote(m), go())} />;
  return <Login hub={hub} message={note ?? message} onSignedIn={onSignedIn} />;
}

function SignedIn({ hub, me, signOut }: { hub: Hub; me: GetMeResponse; signOut: (reason?: string) => void }) {
  const live = useMemo(
    () => new Live(hub, () => signOut(SESSION_ENDED)),
    [hub],
  );
  useEffect(() => {
    live.start();
    void hub.refreshHubInfo().catch(() => undefined);
    // Every few seconds: which nodes the hub has, and whether this one is cut off from it.
    const timer = setInterval(() => void hub.refreshHubInfo().catch(() => undefined), 5000);
    return () => {
      clearInterval(timer);
      live.stop();
    };
  }, [live]);
  const context: AppContext = { hub, live, me, signOut };
  return (
    <App.Provider value={context}>
      <Shell />
    </App.Provider>
  );
}
