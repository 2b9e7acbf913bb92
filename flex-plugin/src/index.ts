import * as FlexPlugin from "@twilio/flex-plugin";

import AudioMessagesPlugin from "./AudioMessagesPlugin";

FlexPlugin.loadPlugin(AudioMessagesPlugin);
