// 災害モード in the shell: the hub's disasters, loaded once for the signed-in page and again
// when one is declared or ended (the live event disaster_changed); the banner while any is in
// force; and the board as the first page after login while one is.
import { createContext } from "preact";
import { useContext, useEffect, useRef } from "preact/hooks";
import type { Disaster, ListDisastersResponse } from "../../gen/kizuna/disaster/v1/disaster_service_pb";
import { AccountKind } from "../../gen/kizuna/common/v1/types_pb";
import { useApp } from "../app-context";
import { useLoad, type Loaded } from "../common";
import { href } from "../route";

/** Whether `d` is in force (not ended). */
export const inForce = (d: Disaster): boolean => d.endedAt === undefined;

/** The disasters of the hub (ListDisasters), shared by the banner, the board and the timelines. */
export const Disasters = createContext<Loaded<ListDisastersResponse> | null>(null);

/** Loads the disasters for the signed-in page (the shell provides them as [`Disasters`]). */
export function useDisastersLoad(): Loaded<ListDisastersResponse> {
  const { hub } = useApp();
  const list = useLoad((c) => c.disaster.listDisasters({}), [], (e) => e.kind.case === "disasterChanged");
  // An answer from a node's possibly stale copy says so in the connection banner, as a timeline does.
  useEffect(() => {
    if (list.data) hub.noteStale(list.data.staleReason !== "");
  }, [list.data]);
  return list;
}

export function useDisasters(): Loaded<ListDisastersResponse> {
  const list = useContext(Disasters);
  if (!list) throw new Error("useDisasters outside the shell");
  return list;
}

/** The disasters in force (none while the list has not loaded). */
export function useInForce(): Disaster[] {
  return useDisasters().data?.disasters.filter(inForce) ?? [];
}

/** Who sees the board: professionals and operators (a family works in its patient's timeline). */
export function seesBoard(kind: AccountKind): boolean {
  return kind === AccountKind.PROFESSIONAL || kind === AccountKind.OPERATOR;
}

/** While a disaster is in force, on every page: which, where, and the way to its board. */
export function DisasterBanner() {
  const { me } = useApp();
  const active = useInForce();
  if (active.length === 0) return null;
  return (
    <div class="banner disaster" role="status" data-testid="disaster-banner">
      {active.map((d) => (
        <p>
          <strong>災害モード</strong>：{d.name}（{d.municipalities.join("・")}）
          {seesBoard(me.kind) ? (
            <>
              {" "}
              <a href={href("disaster", d.disasterId)}>災害ボードを開く</a>
            </>
          ) : (
            " 患者タイムラインから安否を記録できます。"
          )}
        </p>
      ))}
    </div>
  );
}

/**
 * The board first: a professional or an operator who lands on the start page (no route) while
 * a disaster is in force is taken to its board, once, when the list first arrives.
 */
export function useDisasterLanding(landing: boolean) {
  const { me } = useApp();
  const list = useDisasters();
  const pending = useRef(landing && seesBoard(me.kind));
  useEffect(() => {
    if (!pending.current || !list.data) return;
    pending.current = false;
    const first = list.data.disasters.find(inForce);
    // Only if the user has not gone elsewhere meanwhile.
    if (first && location.hash.replace(/^#\/?/, "") === "") location.replace(href("disaster", first.disasterId));
  }, [list.data]);
}
