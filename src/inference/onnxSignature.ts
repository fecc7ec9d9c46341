/**
 * The inputs and outputs an ONNX file declares (names, dtypes, dims), read straight from its
 * ModelProto without loading weights: a multi-gigabyte UNet is skipped over by field lengths, so a
 * catalogue process or the model doctor can tell export generations apart in milliseconds.
 * Graph inputs that are initializers (IR < 4 files list weights as inputs) are left out.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface PortSignature {
  name: string;
  /** onnxruntime-node's names: float32, float16, int64, int32, … */
  type: string;
  /** Fixed sizes as numbers, symbolic ones as their names, unknown as '?'. */
  shape: (number | string)[];
}

export interface OnnxSignature {
  inputs: PortSignature[];
  outputs: PortSignature[];
  opset: number | null;
}

const ELEM_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};

/** Positioned reads over a file, with a small window; big fields are skipped, never read. */
class FileCursor {
  private buf = Buffer.alloc(1 << 16);
  private bufStart = 0;
  private bufEnd = 0;
  pos = 0;

  constructor(private readonly fd: number) {}

  private byte(): number {
    if (this.pos < this.bufStart || this.pos >= this.bufEnd) {
      this.bufStart = this.pos;
      this.bufEnd = this.pos + readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
      if (this.bufEnd <= this.bufStart) throw new Error('unexpected end of file');
    }
    return this.buf[this.pos++ - this.bufStart]!;
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('malformed varint');
  }

  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = this.byte();
    return out;
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) {
      const length = this.varint();
      this.pos += length;
    } else if (wireType === 5) this.pos += 4;
    else throw new Error(`unsupported protobuf wire type ${wireType}`);
  }

  /** Calls `field` for each field of the message ending at `end`; `field` must consume or skip it. */
  fields(end: number, field: (num: number, wireType: number) => void): void {
    while (this.pos < end) {
      const key = this.varint();
      field(Math.floor(key / 8), key & 7);
    }
    if (this.pos !== end) throw new Error('malformed message');
  }
}

function readDim(c: FileCursor, end: number): number | string {
  let dim: number | string = '?';
  c.fields(end, (num, wt) => {
    if (num === 1 && wt === 0) dim = c.varint();
    else if (num === 2 && wt === 2) dim = c.bytes(c.varint()).toString('utf8');
    else c.skip(wt);
  });
  return dim;
}

function readValueInfo(c: FileCursor, end: number): PortSignature {
  const port: PortSignature = { name: '', type: 'unknown', shape: [] };
  c.fields(end, (num, wt) => {
    if (num === 1 && wt === 2) port.name = c.bytes(c.varint()).toString('utf8');
    else if (num === 2 && wt === 2) {
      const typeEnd = c.varint() + c.pos;
      c.fields(typeEnd, (tn, twt) => {
        if (tn !== 1 || twt !== 2) return c.skip(twt); // not a tensor type
        const tensorEnd = c.varint() + c.pos;
        c.fields(tensorEnd, (fn, fwt) => {
          if (fn === 1 && fwt === 0) port.type = ELEM_TYPES[c.varint()] ?? 'unknown';
          else if (fn === 2 && fwt === 2) {
            const shapeEnd = c.varint() + c.pos;
            c.fields(shapeEnd, (sn, swt) => {
              if (sn === 1 && swt === 2) port.shape.push(readDim(c, c.varint() + c.pos));
              else c.skip(swt);
            });
          } else c.skip(fwt);
        });
      });
    } else c.skip(wt);
  });
  return port;
}

function readTensorName(c: FileCursor, end: number): string {
  let name = '';
  c.fields(end, (num, wt) => {
    if (num === 8 && wt === 2) name = c.bytes(c.varint()).toString('utf8');
    else c.skip(wt);
  });
  return name;
}

export function readOnnxSignature(path: string): OnnxSignature {
  const fd = openSync(path, 'r');
  try {
    const c = new FileCursor(fd);
    const size = fstatSync(fd).size;
    const inputs: PortSignature[] = [];
    const outputs: PortSignature[] = [];
    const initializers = new Set<string>();
    let opset: number | null = null;
    let sawGraph = false;
    c.fields(size, (num, wt) => {
      if (num === 7 && wt === 2) {
        sawGraph = true;
        const graphEnd = c.varint() + c.pos;
        c.fields(graphEnd, (gn, gwt) => {
          if (gwt !== 2) return c.skip(gwt);
          const end = c.varint() + c.pos;
          if (gn === 11) inputs.push(readValueInfo(c, end));
          else if (gn === 12) outputs.push(readValueInfo(c, end));
          else if (gn === 5) initializers.add(readTensorName(c, end));
          else c.pos = end;
        });
      } else if (num === 8 && wt === 2) {
        const end = c.varint() + c.pos;
        let domain = '';
        let version: number | null = null;
        c.fields(end, (on, owt) => {
          if (on === 1 && owt === 2) domain = c.bytes(c.varint()).toString('utf8');
          else if (on === 2 && owt === 0) version = c.varint();
          else c.skip(owt);
        });
        if (domain === '' || domain === 'ai.onnx') opset = version;
      } else c.skip(wt);
    });
    if (!sawGraph) throw new Error('no graph in the file');
    return { inputs: inputs.filter((p) => !initializers.has(p.name)), outputs, opset };
  } finally {
    closeSync(fd);
  }
}

interface NodeInfo {
  opType: string;
  inputs: string[];
  outputs: string[];
  group: number;
}

function readNode(c: FileCursor, end: number): NodeInfo {
  const node: NodeInfo = { opType: '', inputs: [], outputs: [], group: 1 };
  c.fields(end, (num, wt) => {
    if (num === 1 && wt === 2) node.inputs.push(c.bytes(c.varint()).toString('utf8'));
    else if (num === 2 && wt === 2) node.outputs.push(c.bytes(c.varint()).toString('utf8'));
    else if (num === 4 && wt === 2) node.opType = c.bytes(c.varint()).toString('utf8');
    else if (num === 5 && wt === 2) {
      const attrEnd = c.varint() + c.pos;
      let name = '';
      let value: number | null = null;
      c.fields(attrEnd, (an, awt) => {
        if (an === 1 && awt === 2) name = c.bytes(c.varint()).toString('utf8');
        else if (an === 3 && awt === 0) value = c.varint();
        else c.skip(awt);
      });
      if (name === 'group' && value !== null) node.group = value;
    } else c.skip(wt);
  });
  return node;
}

/** An initializer's name and dims; its data (raw or external) is skipped. */
function readTensorDims(c: FileCursor, end: number): { name: string; dims: number[] } {
  const tensor = { name: '', dims: [] as number[] };
  c.fields(end, (num, wt) => {
    if (num === 1 && wt === 0) tensor.dims.push(c.varint());
    else if (num === 1 && wt === 2) {
      const packedEnd = c.varint() + c.pos;
      while (c.pos < packedEnd) tensor.dims.push(c.varint());
    } else if (num === 8 && wt === 2) tensor.name = c.bytes(c.varint()).toString('utf8');
    else c.skip(wt);
  });
  return tensor;
}

/** Ops between a graph input and the first convolution that keep its channel axis (casts, scaling). */
const CHANNEL_PRESERVING = new Set(['Cast', 'Identity', 'Mul', 'Add', 'Sub', 'Div']);

/**
 * The input channels of the first convolution that `input` reaches through channel-preserving ops
 * (a UNet's conv_in on `sample`), from its weight's dims [out, in/group, kh, kw]; null when there is
 * none or its weight is not an initializer. For exports whose port leaves the channel axis
 * symbolic (diffusers' converter); reads node and initializer headers, never weights.
 */
export function readFirstConvInChannels(path: string, input: string): number | null {
  const fd = openSync(path, 'r');
  try {
    const c = new FileCursor(fd);
    const nodes: NodeInfo[] = [];
    const dims = new Map<string, number[]>();
    c.fields(fstatSync(fd).size, (num, wt) => {
      if (num !== 7 || wt !== 2) return c.skip(wt);
      const graphEnd = c.varint() + c.pos;
      c.fields(graphEnd, (gn, gwt) => {
        if (gwt !== 2) return c.skip(gwt);
        const end = c.varint() + c.pos;
        if (gn === 1) nodes.push(readNode(c, end));
        else if (gn === 5) {
          const t = readTensorDims(c, end);
          dims.set(t.name, t.dims);
        } else c.pos = end;
      });
    });
    const reached = new Set([input]);
    for (const node of nodes) {
      // Nodes are stored in topological order, so one pass follows the input forward.
      if (node.opType === 'Conv' && reached.has(node.inputs[0] ?? '')) {
        const weight = dims.get(node.inputs[1] ?? '');
        return weight && weight.length === 4 ? weight[1]! * node.group : null;
      }
      if (CHANNEL_PRESERVING.has(node.opType) && node.inputs.some((i) => reached.has(i))) for (const o of node.outputs) reached.add(o);
    }
    return null;
  } finally {
    closeSync(fd);
  }
}
