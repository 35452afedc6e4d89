/** The refinement methods (a leaf module: the settings table reads it). */
export type RefineMethod = 'gcg' | 'epo';
export const REFINE_METHODS: readonly RefineMethod[] = ['gcg', 'epo'];
