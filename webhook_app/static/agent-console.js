// The agent console page script: token handling, the conversation list, and one conversation's audio.
import { mountAudioList, mountRecordPanel } from "./record-panel.js";

const TOKEN_KEY = "audioConsole.flexToken";
const CHANNEL_NAMES = { whatsapp: "WhatsApp", sms: "SMS/MMS", webchat: "Web chat", messenger: "Messenger", other: "Other channel" };
const config = JSON.parse(document.getElementById("console-config").textContent);
const app = document.getElementById("app");

// ---- the agent's token ---------------------------------------------------------------------------------

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

/** The sandbox token is in the page; a real Flex token is asked for once per tab. */
async function getToken() {
  if (config.sandbox) return config.token;
  return storedToken() || askForToken();
}

function askForToken(problem = "") {
  const card = document.getElementById("token-card");
  const error = document.getElementById("token-error");
  error.textContent = problem;
  app.hidden = true;
  card.hidden = false;
  tokenPrompt ??= new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.addEventListener("submit", function submit(event) {
      event.preventDefault();
      const token = form.elements.token.value.trim();
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
  document.getElementById("flex-token").focus();
  return tokenPrompt;
}

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
    await askForToken(`That token was not accepted: ${body.error?.message || "unauthorized"}`);
    window.location.reload();
  }
  if (!response.ok) throw new Error(body.error?.message || `The service answered HTTP ${response.status}.`);
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

function conversationLink(conversation) {
  const item = document.createElement("li");
  const link = document.createElement("a");
  link.className = "conversation-link";
  link.href = config.conversationUrl.replace("CONVERSATION_SID", encodeURIComponent(conversation.sid));
  const name = document.createElement("span");
  name.className = "conversation-name";
  name.textContent = conversation.friendly_name || "Unnamed conversation";
  const meta = document.createElement("span");
  meta.className = "conversation-meta";
  const created = conversation.date_created ? new Date(conversation.date_created).toLocaleString() : "";
  meta.textContent = [conversation.sid, conversation.state, created].filter(Boolean).join(" · ");
  link.append(name, meta);
  item.append(link);
  return item;
}

async function showConversations() {
  const list = document.getElementById("conversation-list");
  const status = document.getElementById("conversations-status");
  status.textContent = "Loading conversations…";
  try {
    const { conversations } = await consoleApi("/conversations");
    list.replaceChildren(...conversations.map(conversationLink));
    status.textContent = conversations.length ? "" : "No conversations yet.";
  } catch (error) {
    status.textContent = `Could not load conversations: ${error.message}`;
  }
}

async function showConversationHeader(sid) {
  try {
    const details = await consoleApi(`/conversations/${encodeURIComponent(sid)}`);
    const title = details.friendly_name || "Conversation";
    document.getElementById("conversation-title").textContent = title;
    document.title = `${title} · Audio messages`;
    document.getElementById("conversation-customer").textContent = details.customer || "";
    const channel = document.getElementById("conversation-channel");
    channel.textContent = CHANNEL_NAMES[details.channel] || details.channel;
    channel.dataset.channel = details.channel;
    channel.hidden = false;
  } catch (error) {
    document.getElementById("conversation-error").textContent = error.message;
  }
}

function setUpSimulation(sid, audioList) {
  const button = document.getElementById("simulate");
  if (!button) return;
  const status = document.getElementById("simulate-status");
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Sending a voice note as the customer…";
    try {
      await consoleApi(`/conversations/${encodeURIComponent(sid)}/simulate-voice-note`, { method: "POST" });
      status.textContent = "Customer voice note delivered.";
      await audioList.refresh();
    } catch (error) {
      status.textContent = `Could not simulate a voice note: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

async function showConversation(sid) {
  await getToken(); // outside the sandbox: nothing is mounted until the agent has given a token
  showConversationHeader(sid);
  const shared = { apiBaseUrl: config.apiBaseUrl, getToken, conversationSid: sid };
  const audioList = mountAudioList(document.getElementById("audio-list"), shared);
  mountRecordPanel(document.getElementById("record-panel"), { ...shared, onSent: () => audioList.refresh() });
  document.getElementById("reload-messages").addEventListener("click", () => audioList.refresh());
  setUpSimulation(sid, audioList);
}

if (!config.sandbox) setUpTokenReset();
if (config.page === "conversations") {
  document.getElementById("reload-conversations").addEventListener("click", showConversations);
  showConversations();
} else if (config.page === "conversation") {
  showConversation(config.conversationSid);
}
