/** Builds the executable schema from every type family. */
import { lexicographicSortSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.js';
import './enums.js';
import './models.js';
import './jobs.js';
import './events.js';

export type { GraphQLContext } from './builder.js';

let schema: GraphQLSchema | undefined;

export function buildSchema(): GraphQLSchema {
  schema ??= builder.toSchema({ sortSchema: false });
  return schema;
}

export function printableSchema(): GraphQLSchema {
  return lexicographicSortSchema(buildSchema());
}
