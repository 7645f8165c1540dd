// The Deno entry point (`npm run start:deno`): the same platform through the Deno runtime adapter.
import { launch } from "./launch.ts";
import { denoRuntime } from "./runtime/deno.ts";

await launch(denoRuntime);
