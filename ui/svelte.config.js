import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

/** @type {import("@sveltejs/vite-plugin-svelte").SvelteConfig} */
export default {
  preprocess: vitePreprocess(),
  // Runes everywhere: no legacy reactive statements or `export let`.
  compilerOptions: { runes: true },
};
