// What every view needs: the hub connection, the live stream, who is signed in, and logging out.
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Hub } from "../api/hub";
import type { Live } from "../api/live";
import type { GetMeResponse } from "../gen/kizuna/accounts/v1/account_service_pb";

export interface AppContext {
  hub: Hub;
  live: Live;
  me: GetMeResponse;
  /** Back to the login page, with why (a stopped account, an expired session). */
  signOut: (reason?: string) => void;
}

export const App = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const app = useContext(App);
  if (!app) throw new Error("useApp outside a signed-in page");
  return app;
}
