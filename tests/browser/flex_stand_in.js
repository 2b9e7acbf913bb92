/*
 * A stand-in for the parts of the Flex UI runtime the audio-messages plugin touches, for the browser test
 * (tests/browser/test_flex_plugin.py). Not Flex: a real Flex needs a Twilio login. It provides what a built plugin
 * bundle expects from the page (flex-plugin/ docs, "How a built bundle registers itself"):
 *
 *   - globals React and ReactDOM (the bundle does not carry them);
 *   - window.Twilio.Flex with Plugins.init(PluginClass), withTaskContext, and the two programmable components the
 *     plugin extends, MessageInputActions and MessageBubble, each with a Content store honouring add(element,
 *     {if, sortOrder}) the way Flex's DynamicContentStore does (children get the component's props);
 *   - a manager whose configuration carries ui_attributes (audio_messages.service_url), whose store holds the SSO
 *     token, and a task list: selecting a task is what switching tasks is in Flex.
 *
 * Messages come from the local Twilio sandbox (the test answers /stand-in/messages/<ConversationSid> from it), in
 * the shape Flex's MessageState has: {isFromMe, source: {sid, body, author, attachedMedia: [{sid, contentType,
 * filename}]}}. A MessageBubble shows Flex's raw attachment link in its `.Twilio-MessageBubble-Body`.
 */
(function () {
  "use strict";
  var e = React.createElement;
  var config = window.__flexTest;

  function contentStore(name) {
    var fragments = [];
    return {
      name: name,
      fragments: fragments,
      add: function (element, options) {
        var fragment = { element: element, options: options || {} };
        fragments.push(fragment);
        return function () { fragments.splice(fragments.indexOf(fragment), 1); };
      },
      remove: function () { return function () {}; },
      render: function (props) {
        return fragments
          .filter(function (f) { return !f.options.if || f.options.if(props); })
          .slice()
          .sort(function (a, b) { return (a.options.sortOrder || 0) - (b.options.sortOrder || 0); })
          .map(function (f) { return f.options.noChildProps ? f.element : React.cloneElement(f.element, props); });
      },
    };
  }

  var TaskContext = React.createContext({ task: null });

  function withTaskContext(Component) {
    return function WithTaskContext(props) {
      return e(TaskContext.Consumer, null, function (context) {
        return e(Component, Object.assign({}, props, { task: context.task }));
      });
    };
  }

  function MessageInputActions(props) {
    return e("div", { className: "Twilio-MessageInputActions", style: { display: "flex", gap: "6px", alignItems: "center" } },
      e("button", { type: "button", "aria-label": "Attach file" }, "Attach"),
      MessageInputActions.Content.render(props),
      e("button", { type: "button", "aria-label": "Send message" }, "Send"));
  }
  MessageInputActions.Content = contentStore("MessageInputActions");

  function MessageBubble(props) {
    var source = props.message.source;
    var media = source.attachedMedia || [];
    return e("div", {
      className: "Twilio-MessageBubble" + (props.message.isFromMe ? " from-me" : ""),
      "data-message-sid": source.sid,
    },
    e("div", { className: "Twilio-MessageBubble-Header" }, props.message.isFromMe ? "You" : source.author),
    e("div", { className: "Twilio-MessageBubble-Body" },
      source.body || null,
      media.map(function (m) {
        return e("a", { key: m.sid, className: "raw-attachment", href: "#" + m.sid }, m.filename || m.sid);
      })),
    MessageBubble.Content.render(props));
  }
  MessageBubble.Content = contentStore("MessageBubble");

  var manager = {
    configuration: config.serviceUrl === null ? {} : { audio_messages: { service_url: config.serviceUrl } },
    serviceConfiguration: { ui_attributes: {} },
    user: { identity: config.identity, token: config.token },
    // Read on every call, as Flex's store is: the test may "refresh" the token.
    store: { getState: function () { return { flex: { session: { ssoTokenPayload: { token: config.token } } } }; } },
  };

  function toMessageState(message) {
    return {
      isFromMe: message.author === config.identity,
      source: {
        sid: message.sid,
        body: message.body,
        author: message.author,
        attachedMedia: (message.media || []).map(function (m) {
          return { sid: m.sid, contentType: m.content_type, filename: m.filename };
        }),
      },
    };
  }

  function Conversation(props) {
    var state = React.useState([]);
    var messages = state[0];
    var setMessages = state[1];
    React.useEffect(function () {
      var stopped = false;
      setMessages([]);
      function poll() {
        fetch("/stand-in/messages/" + props.conversationSid).then(function (r) { return r.json(); }).then(function (list) {
          if (!stopped) setMessages(list.map(toMessageState));
        }).catch(function () {
          // the test's server is gone (the test is over) or busy: ask again
        }).finally(function () { if (!stopped) setTimeout(poll, 400); });
      }
      poll();
      return function () { stopped = true; };
    }, [props.conversationSid]);
    return e("section", { className: "conversation", "aria-label": "Conversation" },
      e("ol", { className: "messages" }, messages.map(function (message) {
        return e("li", { key: message.source.sid },
          e(MessageBubble, { conversationSid: props.conversationSid, message: message, inFocus: false }));
      })),
      e(MessageInputActions, { conversationSid: props.conversationSid }));
  }

  function AgentDesktop() {
    var state = React.useState(config.tasks[0]);
    var task = state[0];
    var setTask = state[1];
    return e("div", { className: "desktop" },
      e("nav", { "aria-label": "Tasks" }, config.tasks.map(function (t) {
        return e("button", { key: t.sid, type: "button", "aria-pressed": String(t === task), onClick: function () { setTask(t); } }, t.label);
      })),
      e(TaskContext.Provider, { value: { task: task } },
        // No key: as in Flex, switching tasks re-renders the message input with another conversationSid.
        e(Conversation, { conversationSid: task.attributes.conversationSid })));
  }

  window.Twilio = window.Twilio || {};
  window.Twilio.Flex = {
    withTaskContext: withTaskContext,
    MessageInputActions: MessageInputActions,
    MessageBubble: MessageBubble,
    Manager: { getInstance: function () { return manager; } },
    Plugins: {
      init: function (PluginClass) {
        var plugin = new PluginClass();
        Promise.resolve(plugin.init(window.Twilio.Flex, manager)).then(function () {
          window.__pluginName = plugin.name;
          ReactDOM.render(e(AgentDesktop), document.getElementById("flex"));
        });
      },
    },
  };
})();
