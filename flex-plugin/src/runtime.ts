/** What the plugin's components share: the manager (for the token and the theme), the service and the store. */
import { AudioService } from "@shared/api.js";
import { AudioStore, AudioStoreOptions } from "./audioStore";
import { FlexManagerLike, readFlexToken, readServiceUrl } from "./config";

export interface Runtime {
  manager: FlexManagerLike;
  /** null when the service URL is missing or invalid; configError then says why. */
  service: AudioService | null;
  store: AudioStore | null;
  configError: string | null;
}

export function createRuntime(manager: FlexManagerLike, storeOptions?: AudioStoreOptions): Runtime {
  const configured = readServiceUrl(manager);
  if (configured.error !== undefined) {
    return { manager, service: null, store: null, configError: configured.error };
  }
  // The token is read on every request: Flex refreshes it while the agent works.
  const service = new AudioService(configured.url, () => readFlexToken(manager));
  return { manager, service, store: new AudioStore(service, storeOptions), configError: null };
}

/** The narrow slice of Flex's ITask the plugin reads. */
export interface TaskLike {
  taskChannelUniqueName?: string;
  attributes?: { conversationSid?: string; channelSid?: string } | null;
}

const CONVERSATION_SID = /^CH[0-9a-fA-F]{32}$/;

/** The Conversation SID of a Conversations-based (chat) task, or null for voice, email and legacy tasks. */
export function taskConversationSid(task: TaskLike | null | undefined): string | null {
  const sid = task?.attributes?.conversationSid;
  return sid && CONVERSATION_SID.test(sid) ? sid : null;
}
