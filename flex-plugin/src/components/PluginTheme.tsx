/**
 * Flex's theme for the plugin's Paste components. Paste reads its theme from React context, and the plugin's
 * bundle carries its own copy of Paste, so it cannot see the provider inside Flex's bundle: this one is built
 * from the same source Flex builds its own from, `configuration.theme` (light or dark, and the token overrides
 * an administrator set). No colours of our own.
 */
import * as React from "react";
import { CustomizationProvider, CustomizationProviderProps } from "@twilio-paste/core/customization";

import { FlexManagerLike } from "../config";

interface FlexThemeConfig {
  isLight?: boolean;
  tokens?: CustomizationProviderProps["theme"];
}

export function flexTheme(manager: FlexManagerLike): FlexThemeConfig {
  const configuration = manager.configuration as { theme?: FlexThemeConfig } | undefined;
  return configuration?.theme ?? {};
}

export function PluginTheme({ manager, children }: { manager: FlexManagerLike; children: React.ReactNode }) {
  const theme = flexTheme(manager);
  return (
    <CustomizationProvider baseTheme={theme.isLight === false ? "dark" : "default"} theme={theme.tokens}>
      {children}
    </CustomizationProvider>
  );
}
