// Worker thread of the diff pool (sandbox/diff-pool.ts): computes one file's bounded patch per job.
import { makePatch } from "./diff-patch.ts";
import { serveJobs } from "./diff-pool.ts";

serveJobs(makePatch);
