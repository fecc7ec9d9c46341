/** Entry point for GraphQL Code Generator (codegen.yml): the schema as the code builds it, sorted. */
import { printableSchema } from './index.js';

export const schema = printableSchema();
export default schema;
