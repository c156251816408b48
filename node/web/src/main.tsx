// Kizuna's browser client: served by every node of the hub, talking gRPC-Web to it.
import { render } from "preact";
import { Root } from "./ui/root";

const app = document.getElementById("app");
if (app) render(<Root />, app);

// Keeps the page's files, so the app opens even when this node is down (src/sw.js). Browsers
// allow it only on https (and localhost); without it the app works the same, minus that.
navigator.serviceWorker?.register("/sw.js").catch(() => undefined);
