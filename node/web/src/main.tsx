// Kizuna's browser client: served by every node of the hub, talking gRPC-Web to it.
import { render } from "preact";
import { Root } from "./ui/root";

const app = document.getElementById("app");
if (app) render(<Root />, app);
