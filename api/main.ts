// The Bun entry point (`npm start`): the platform through the Bun runtime adapter.
import { launch } from "./launch.ts";
import { bunRuntime } from "./runtime/bun.ts";

await launch(bunRuntime);
