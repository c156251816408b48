// The signed-in page: header, the connection banner, the disaster banner (while one is in force),
// navigation and the current view.
import { useApp } from "./app-context";
import { LinkBanner } from "./banner";
import { DisasterView } from "./disaster/board";
import { DisasterBanner, Disasters, useDisasterLanding, useDisastersLoad } from "./disaster/list";
import { FacilityView, MapView } from "./map";
import { RequestsView, RequestView } from "./requests";
import { RoomView } from "./room";
import { RoomList } from "./rooms";
import { href, useRoute } from "./route";
import { SearchView } from "./search";
import { SettingsView } from "./settings";
import { when } from "./labels";
import { AccountKind } from "../gen/kizuna/common/v1/types_pb";
import { RoomListKind } from "../gen/kizuna/rooms/v1/room_service_pb";

/** Sections of the page: (route, label). */
const NAV: [string, string][] = [
  ["patients", "患者"],
  ["groups", "グループ"],
  ["connections", "つながり"],
  ["requests", "リクエスト"],
  ["map", "資源マップ"],
  ["disaster", "災害"],
  ["search", "検索"],
  ["settings", "設定"],
];

/** What a family account has no use for: they work with their patient's team only. */
const PROFESSIONAL_ONLY = new Set(["connections", "requests", "map", "disaster"]);

export function Shell() {
  const { me } = useApp();
  const route = useRoute();
  const section = route[0] ?? "patients";
  const nav = me.kind === AccountKind.FAMILY ? NAV.filter(([path]) => !PROFESSIONAL_ONLY.has(path)) : NAV;
  const disasters = useDisastersLoad();
  return (
    <Disasters.Provider value={disasters}>
      <Page route={route} section={section} nav={nav} />
    </Disasters.Provider>
  );
}

function Page({ route, section, nav }: { route: string[]; section: string; nav: [string, string][] }) {
  const { me } = useApp();
  // Landing on the start page while a disaster is in force: its board first.
  useDisasterLanding(route.length === 0);
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href={href("patients")}>
          Kizuna
        </a>
        <span class="who" data-testid="me">
          {me.displayName}
          {me.facilityName && <span class="facility">{me.facilityName}</span>}
        </span>
      </header>
      <LinkBanner />
      <DisasterBanner />
      <SecondFactorDue />
      <nav class="tabs" aria-label="メニュー">
        {nav.map(([path, label]) => (
          <a href={href(path)} aria-current={section === path || (section === "room" && path === "patients") ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      <main class="content">{view(route)}</main>
    </div>
  );
}

/** Until the account has a second factor the hub requires, by when (設定 → 2段階認証). */
function SecondFactorDue() {
  const { me } = useApp();
  if (!me.secondFactorDue || me.totpEnabled) return null;
  return (
    <div class="banner info" role="status" data-testid="second-factor-due">
      このハブでは2段階認証が必須です。{when(me.secondFactorDue)} までに<a href={href("settings")}>設定</a>で有効にしてください。期限を過ぎるとログインできなくなります。
    </div>
  );
}

/** The view of a route; keyed, so that another room or list starts with fresh state. */
function view(route: string[]) {
  const [section, rawId] = route;
  const id = parseId(rawId);
  switch (section) {
    case "groups":
      return <RoomList key="groups" kind={RoomListKind.GROUPS} />;
    case "connections":
      return <RoomList key="connections" kind={RoomListKind.CONNECTIONS} />;
    case "room":
      return id !== null ? <RoomView key={`room-${id}`} roomId={id} /> : notFound();
    case "requests":
      return id !== null ? <RequestView key={`request-${id}`} id={id} /> : <RequestsView />;
    case "map":
      return <MapView />;
    case "facility":
      return id !== null ? <FacilityView key={`facility-${id}`} id={id} /> : notFound();
    case "disaster":
      return rawId === undefined || id !== null ? <DisasterView key={`disaster-${id ?? ""}`} id={id} /> : notFound();
    case "search":
      return <SearchView />;
    case "settings":
      return <SettingsView />;
    default:
      return <RoomList key="patients" kind={RoomListKind.PATIENTS} />;
  }
}

/** An id from a route: a decimal number, or null (a mistyped link shows a message, never a blank page). */
function parseId(text: string | undefined): bigint | null {
  return text !== undefined && /^[0-9]{1,20}$/.test(text) ? BigInt(text) : null;
}

function notFound() {
  return <p class="error">このページは見つかりません。メニューから開き直してください。</p>;
}
