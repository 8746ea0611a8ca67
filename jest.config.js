/** Tests run TypeScript directly (ts-jest, isolatedModules in tsconfig.json makes it transpile only: `npm run typecheck` checks types). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  testTimeout: 120000,
};
