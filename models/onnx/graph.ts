/**
 * A small ONNX graph builder that serialises to ModelProto bytes (opset 17, IR version 8).
 * Used by the model generators to write real ONNX files from TypeScript.
 */
import { ProtoWriter } from './protobuf.js';

export type ElemType = 'float32' | 'float16' | 'int32' | 'int64';
export type Dim = number | string;

const ELEM_TYPE_CODE: Record<ElemType, number> = { float32: 1, float16: 10, int32: 6, int64: 7 };

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_FLOATS = 6;
const ATTR_INTS = 7;

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | TensorValue;

export interface TensorValue {
  readonly elemType: ElemType;
  readonly dims: readonly number[];
  readonly data: Float32Array | Int32Array | BigInt64Array;
}

interface NodeDef {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: [string, AttrValue][];
}

interface ValueInfo {
  name: string;
  elemType: ElemType;
  dims: readonly Dim[];
}

export const OPSET = 17;
const IR_VERSION = 8;

export class GraphBuilder {
  private nodes: NodeDef[] = [];
  private inputs: ValueInfo[] = [];
  private outputs: ValueInfo[] = [];
  private initializers: { name: string; tensor: TensorValue }[] = [];
  private counter = 0;

  constructor(readonly name: string) {}

  private fresh(prefix: string): string {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  input(name: string, elemType: ElemType, dims: readonly Dim[]): string {
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  /** Marks `value` as a graph output named `name` (adds an Identity when the names differ). */
  output(name: string, value: string, elemType: ElemType, dims: readonly Dim[]): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', inputs: [value], outputs: [name], name: `${name}_out`, attrs: [] });
    this.outputs.push({ name, elemType, dims });
  }

  initializer(prefix: string, tensor: TensorValue): string {
    const name = this.fresh(prefix);
    this.initializers.push({ name, tensor });
    return name;
  }

  /** Float32 constant (stored as an initializer). */
  f32(values: readonly number[] | Float32Array, dims: readonly number[] = [values.length], prefix = 'const'): string {
    return this.initializer(prefix, { elemType: 'float32', dims, data: Float32Array.from(values) });
  }

  i64(values: readonly number[], dims: readonly number[] = [values.length], prefix = 'shape'): string {
    return this.initializer(prefix, { elemType: 'int64', dims, data: BigInt64Array.from(values.map((v) => BigInt(v))) });
  }

  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, outputCount = 1): string[] {
    const outputs = Array.from({ length: outputCount }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push({ opType, inputs: [...inputs], outputs, name: this.fresh(`n_${opType}`), attrs: Object.entries(attrs) });
    return outputs;
  }

  /** Single-output op. */
  op1(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}): string {
    return this.op(opType, inputs, attrs, 1)[0]!;
  }

  toBytes(docString = ''): Uint8Array {
    return this.serialise(docString, null);
  }

  /**
   * The model with every initializer of at least `threshold` bytes stored in a separate file
   * named `location` beside it (ONNX external data, as torch.onnx / optimum write big models).
   */
  toExternalData(location: string, docString = '', threshold = 1024): { model: Uint8Array; data: Uint8Array } {
    const external = { location, threshold, chunks: [] as Uint8Array[], offset: 0 };
    const model = this.serialise(docString, external);
    const data = new Uint8Array(external.offset);
    let at = 0;
    for (const c of external.chunks) {
      data.set(c, at);
      at += c.length;
    }
    return { model, data };
  }

  private serialise(docString: string, external: ExternalData | null): Uint8Array {
    const w = new ProtoWriter();
    w.int(1, IR_VERSION);
    w.string(2, 'image-edit-server/models');
    w.string(3, '1');
    if (docString) w.string(6, docString);
    w.message(7, (g) => this.writeGraph(g, external));
    w.message(8, (o) => o.string(1, '').int(2, OPSET));
    return w.finish();
  }

  private writeGraph(g: ProtoWriter, external: ExternalData | null): void {
    for (const n of this.nodes) g.message(1, (w) => writeNode(w, n));
    g.string(2, this.name);
    for (const init of this.initializers) g.message(5, (w) => writeTensor(w, init.tensor, init.name, external));
    for (const i of this.inputs) g.message(11, (w) => writeValueInfo(w, i));
    for (const o of this.outputs) g.message(12, (w) => writeValueInfo(w, o));
  }
}

function writeNode(w: ProtoWriter, n: NodeDef): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, value] of n.attrs) w.message(5, (a) => writeAttr(a, name, value));
}

function writeAttr(a: ProtoWriter, name: string, value: AttrValue): void {
  a.string(1, name);
  if (typeof value === 'number') {
    a.int(3, value).int(20, ATTR_INT);
  } else if (typeof value === 'string') {
    a.string(4, value).int(20, ATTR_STRING);
  } else if (Array.isArray(value)) {
    a.packedInts(8, value).int(20, ATTR_INTS);
  } else if ('float' in value) {
    a.float(2, value.float).int(20, ATTR_FLOAT);
  } else if ('floats' in value) {
    a.packedFloats(7, value.floats).int(20, ATTR_FLOATS);
  } else {
    a.message(5, (t) => writeTensor(t, value, '')).int(20, ATTR_TENSOR);
  }
}

interface ExternalData {
  location: string;
  threshold: number;
  chunks: Uint8Array[];
  offset: number;
}

function writeTensor(w: ProtoWriter, t: TensorValue, name: string, external: ExternalData | null = null): void {
  w.packedInts(1, t.dims);
  w.int(2, ELEM_TYPE_CODE[t.elemType]);
  if (name) w.string(8, name);
  // raw_data is little-endian, which is what typed arrays hold on every platform Node supports.
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (external && raw.length >= external.threshold) {
    // TensorProto.external_data (13: key/value entries) with data_location EXTERNAL (14 = 1).
    const entry = (key: string, value: string): void => void w.message(13, (e) => e.string(1, key).string(2, value));
    entry('location', external.location);
    entry('offset', String(external.offset));
    entry('length', String(raw.length));
    w.int(14, 1);
    external.chunks.push(raw.slice());
    external.offset += raw.length;
    return;
  }
  w.bytes(9, raw);
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ELEM_TYPE_CODE[v.elemType]);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}
