// The session page's entry: sign-in, the list of sessions, and routing by the URL's hash
// (#/ for the list, #/sessions/<id> for one session, so links and the back button work).
import { ApiError, account, disconnect, onConnectionState, request } from "./api.js";
import { byId, h, time } from "./dom.js";
import { clearNotices, fail, say } from "./notices.js";
import * as Q from "./queries.js";
import { openSession } from "./session-view.js";

const ui = {
  account: byId("account"),
  accountEmail: byId("account-email"),
  signOut: byId("sign-out"),
  connection: byId("connection"),
  signIn: byId("sign-in"),
  signInForm: /** @type {HTMLFormElement} */ (byId("sign-in-form")),
  sessions: byId("sessions"),
  sessionList: byId("session-list"),
  moreSessions: /** @type {HTMLButtonElement} */ (byId("more-sessions")),
  createForm: /** @type {HTMLFormElement} */ (byId("create-session-form")),
};

/** @type {(() => void) | undefined} */
let closeSession;
/** @type {string | null} */
let sessionsAfter = null;

function route() {
  closeSession?.();
  closeSession = undefined;
  ui.signIn.hidden = true;
  ui.sessions.hidden = true;
  ui.account.hidden = !account.token;
  if (!account.token) {
    ui.signIn.hidden = false;
    return;
  }
  ui.accountEmail.textContent = `Signed in as ${account.email}`;
  const open = /^#\/sessions\/([^/]+)$/.exec(location.hash);
  if (open) {
    let id;
    try {
      id = decodeURIComponent(open[1] ?? "");
    } catch {
      location.hash = "#/";
      return;
    }
    closeSession = openSession(id, { onSignedOut: signOut });
  } else {
    ui.sessions.hidden = false;
    ui.sessionList.replaceChildren();
    sessionsAfter = null;
    loadSessions().catch(failOrSignOut);
  }
}

async function loadSessions() {
  const { sessions } = await request(Q.SESSIONS, { after: sessionsAfter });
  for (const s of sessions.nodes) {
    const link = h("a", { href: `#/sessions/${encodeURIComponent(s.id)}` }, s.title);
    ui.sessionList.append(
      h("li", {}, link, ` · ${s.viewerRole?.toLowerCase() ?? ""} · created ${time(s.createdAt)}`),
    );
  }
  if (ui.sessionList.childElementCount === 0) ui.sessionList.append(h("li", {}, "No sessions yet."));
  sessionsAfter = sessions.pageInfo.endCursor;
  ui.moreSessions.hidden = !sessions.pageInfo.hasNextPage;
}

/** @param {unknown} [reason] */
function signOut(reason) {
  account.clear();
  disconnect();
  clearNotices();
  if (reason) fail(new Error("You are signed out: your sign-in is no longer valid"));
  if (location.hash !== "#/") location.hash = "#/";
  else route();
}

/** @param {unknown} error */
function failOrSignOut(error) {
  if (error instanceof ApiError && error.code === "UNAUTHENTICATED") signOut(error);
  else fail(error);
}

ui.signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearNotices();
  const form = new FormData(ui.signInForm);
  const email = String(form.get("email"));
  const registering = /** @type {HTMLButtonElement | null} */ (event.submitter)?.value === "register";
  try {
    const data = await request(registering ? Q.REGISTER : Q.LOGIN, { email, password: form.get("password") });
    const auth = registering ? data.register : data.login;
    disconnect();
    account.set(auth.token, auth.user.email);
    ui.signInForm.reset();
    say(registering ? "Registered and signed in" : "Signed in");
    route();
  } catch (error) {
    fail(error);
  }
});

ui.createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ (ui.createForm.elements.namedItem("title"));
  try {
    const { createSession } = await request(Q.CREATE_SESSION, { title: input.value });
    input.value = "";
    say("Session created");
    location.hash = `#/sessions/${encodeURIComponent(createSession.id)}`;
  } catch (error) {
    failOrSignOut(error);
  }
});

ui.moreSessions.addEventListener("click", () => loadSessions().catch(failOrSignOut));
ui.signOut.addEventListener("click", () => signOut());
onConnectionState((state) => {
  ui.connection.textContent = { connecting: "connecting…", live: "live", closed: "offline" }[state];
  ui.connection.dataset.state = state;
});
window.addEventListener("hashchange", route);
route();
