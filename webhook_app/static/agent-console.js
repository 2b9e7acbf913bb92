// @ts-check
// The agent console page script: token handling, the conversation list, and one conversation's audio (the record
// panel and the audio list, from record-panel.js as a Flex plugin imports them).
import { mountAudioList, mountRecordPanel } from "./record-panel.js";
import { byId, el } from "./shared/dom.js";
import { errorFields, errorParts } from "./shared/errors.js";

/**
 * What the page's template hands the script (console.py's _page_config); the token only in the sandbox.
 * @typedef {{sandbox: boolean, apiBaseUrl: string, consoleApi: string, conversationsUrl: string,
 *   conversationUrl: string, page: "conversations" | "conversation", conversationSid?: string, identity?: string,
 *   token?: string}} ConsoleConfig
 */
/**
 * @typedef {{sid: string, friendly_name?: string | null, state?: string | null, date_created?: string | null}}
 *   ConversationSummary
 */

const TOKEN_KEY = "audioConsole.flexToken";
/** @type {Record<string, string>} */
const CHANNEL_NAMES = { whatsapp: "WhatsApp", sms: "SMS/MMS", webchat: "Web chat", messenger: "Messenger", other: "Other channel" };
/** @type {ConsoleConfig} */
const config = JSON.parse(byId("console-config", HTMLScriptElement).text);
const app = byId("app", HTMLElement);

// ---- the agent's token ---------------------------------------------------------------------------------

/** @type {Promise<string> | null} */
let tokenPrompt = null;

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage blocked: the agent pastes the token again after a reload
  }
}

function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

/**
 * The sandbox token is in the page; a real Flex token is asked for once per tab.
 * @returns {Promise<string>}
 */
async function getToken() {
  if (config.sandbox) return config.token || "";
  return storedToken() || askForToken();
}

/**
 * Show the token card (saying what was wrong with the last token) until the agent gives one.
 * @param {string} [problem]
 * @returns {Promise<string>}
 */
function askForToken(problem = "") {
  const card = byId("token-card", HTMLElement);
  const error = byId("token-error", HTMLElement);
  error.textContent = problem;
  app.hidden = true;
  card.hidden = false;
  tokenPrompt ??= new Promise((resolve) => {
    const form = byId("token-form", HTMLFormElement);
    const field = byId("flex-token", HTMLTextAreaElement);
    form.addEventListener("submit", function submit(event) {
      event.preventDefault();
      const token = field.value.trim();
      if (!token) return;
      form.removeEventListener("submit", submit);
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch {
        // kept for this page view only
      }
      card.hidden = true;
      app.hidden = false;
      tokenPrompt = null;
      resolve(token);
    });
  });
  byId("flex-token", HTMLTextAreaElement).focus();
  return tokenPrompt;
}

/**
 * Call the console's JSON API as the agent; resolves with the parsed body, throws an Error to show.
 * @param {string} path
 * @param {{method?: string}} [request]
 * @returns {Promise<any>}
 */
async function consoleApi(path, { method = "GET" } = {}) {
  const token = await getToken();
  let response;
  try {
    response = await fetch(config.consoleApi + path, {
      method, headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
    });
  } catch {
    throw new Error("The service could not be reached. Check the connection and try again.");
  }
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && !config.sandbox) {
    // An expired or wrong token: ask again, then start the page over with the new one.
    forgetToken();
    await askForToken(`That token was not accepted: ${errorFields(body).message || "unauthorized"}`);
    window.location.reload();
  }
  if (!response.ok) throw new Error(errorFields(body).message || `The service answered HTTP ${response.status}.`);
  return body;
}

function setUpTokenReset() {
  const button = document.getElementById("forget-token");
  if (!button) return;
  button.hidden = false;
  button.addEventListener("click", () => {
    forgetToken();
    window.location.reload();
  });
}

// ---- pages ---------------------------------------------------------------------------------------------

/** @param {ConversationSummary} conversation */
function conversationLink(conversation) {
  const created = conversation.date_created ? new Date(conversation.date_created).toLocaleString() : "";
  const href = config.conversationUrl.replace("CONVERSATION_SID", encodeURIComponent(conversation.sid));
  return el("li", {},
    el("a", { class: "conversation-link", href },
      el("span", { class: "conversation-name", text: conversation.friendly_name || "Unnamed conversation" }),
      el("span", { class: "conversation-meta",
                   text: [conversation.sid, conversation.state, created].filter(Boolean).join(" · ") })));
}

async function showConversations() {
  const list = byId("conversation-list", HTMLUListElement);
  const status = byId("conversations-status", HTMLElement);
  status.textContent = "Loading conversations…";
  try {
    /** @type {{conversations: ConversationSummary[]}} */
    const { conversations } = await consoleApi("/conversations");
    list.replaceChildren(...conversations.map(conversationLink));
    status.textContent = conversations.length ? "" : "No conversations yet.";
  } catch (error) {
    status.textContent = `Could not load conversations: ${errorParts(error).message}`;
  }
}

/** @param {string} sid */
async function showConversationHeader(sid) {
  try {
    /** @type {{friendly_name?: string | null, customer?: string | null, channel: string}} */
    const details = await consoleApi(`/conversations/${encodeURIComponent(sid)}`);
    const title = details.friendly_name || "Conversation";
    byId("conversation-title", HTMLElement).textContent = title;
    document.title = `${title} · Audio messages`;
    byId("conversation-customer", HTMLElement).textContent = details.customer || "";
    const channel = byId("conversation-channel", HTMLElement);
    channel.textContent = CHANNEL_NAMES[details.channel] || details.channel;
    channel.dataset.channel = details.channel;
    channel.hidden = false;
  } catch (error) {
    byId("conversation-error", HTMLElement).textContent = errorParts(error).message;
  }
}

/**
 * The sandbox's "Simulate customer voice note" button (absent outside the sandbox).
 * @param {string} sid
 * @param {{refresh: () => Promise<void>}} audioList
 */
function setUpSimulation(sid, audioList) {
  const button = document.getElementById("simulate");
  if (!(button instanceof HTMLButtonElement)) return;
  const status = byId("simulate-status", HTMLElement);
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Sending a voice note as the customer…";
    try {
      await consoleApi(`/conversations/${encodeURIComponent(sid)}/simulate-voice-note`, { method: "POST" });
      status.textContent = "Customer voice note delivered.";
      await audioList.refresh();
    } catch (error) {
      status.textContent = `Could not simulate a voice note: ${errorParts(error).message}`;
    } finally {
      button.disabled = false;
    }
  });
}

/** @param {string} sid */
async function showConversation(sid) {
  await getToken(); // outside the sandbox: nothing is mounted until the agent has given a token
  showConversationHeader(sid);
  const shared = { apiBaseUrl: config.apiBaseUrl, getToken, conversationSid: sid };
  const audioList = mountAudioList(byId("audio-list", HTMLElement), shared);
  mountRecordPanel(byId("record-panel", HTMLElement), { ...shared, onSent: () => audioList.refresh() });
  byId("reload-messages", HTMLButtonElement).addEventListener("click", () => audioList.refresh());
  setUpSimulation(sid, audioList);
}

if (!config.sandbox) setUpTokenReset();
if (config.page === "conversations") {
  byId("reload-conversations", HTMLButtonElement).addEventListener("click", showConversations);
  showConversations();
} else if (config.page === "conversation" && config.conversationSid) {
  showConversation(config.conversationSid);
}
