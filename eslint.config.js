// Lint rules that catch what the compiler does not: unawaited promises (an
// unawaited LevelDB write or ack breaks durability), type-only imports (also
// of the generated src/gen/), and console output outside scripts/.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      'src/gen/',
      'bench-results/',
      'datasets/',
      'bin/',
      '*.config.*',
    ],
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': 'error',
      // src/gen/ is generated before typecheck and lint but not committed, and
      // tsx, vitest and the image run without it: only type imports of it, which
      // are erased, may appear (an inline `type` specifier leaves the import).
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/gen/**'],
              allowTypeImports: true,
              message: 'src/gen/ is not there at run time: import its types with `import type`.',
            },
          ],
        },
      ],
      '@typescript-eslint/no-import-type-side-effects': 'error',
    },
  },
  { files: ['scripts/**/*.ts', 'test/**/*.ts'], rules: { 'no-console': 'off' } },
);
