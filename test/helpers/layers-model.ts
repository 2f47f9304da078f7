/**
 * TF.js Layers models on disk as `model.save('file://DIR')` writes them with
 * tfjs-node (model.json with `./weights.bin` in its weights manifest, and
 * weights.bin), and read back the way `tf.loadLayersModel('file://…')` reads
 * them, for tests that need no native tfjs-node.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import * as tf from '@tensorflow/tfjs'

/** Saves `model` into `dir` in tfjs-node's file:// layout; returns the model.json path. */
export async function saveToDir (model: tf.LayersModel, dir: string, opts: { weights?: boolean } = {}): Promise<string> {
  mkdirSync(dir, { recursive: true })
  await model.save(tf.io.withSaveHandler(async artifacts => {
    const json: Record<string, unknown> = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format,
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy
    }
    if (opts.weights !== false && artifacts.weightData !== undefined) {
      writeFileSync(join(dir, 'weights.bin'), new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)))
      json.weightsManifest = [{ paths: ['./weights.bin'], weights: artifacts.weightSpecs }]
    }
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json))
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
  }))
  return join(dir, 'model.json')
}

/** An IO handler reading model.json and the weight files its manifest names, as tfjs-node's file:// loader. */
export function fileHandler (modelJsonPath: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(readFileSync(modelJsonPath, 'utf8')) as tf.io.ModelJSON
      const manifest = json.weightsManifest ?? []
      const parts = manifest.flatMap(g => g.paths).map(p => readFileSync(join(dirname(modelJsonPath), p)))
      const data = Buffer.concat(parts)
      return {
        modelTopology: json.modelTopology,
        weightSpecs: manifest.flatMap(g => g.weights),
        weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)
      }
    }
  }
}

/** A Keras-style MNIST classifier written with stock TF.js layers: conv + batch norm + dropout + dense, softmax out. */
export function kerasStyleCnn (): tf.Sequential {
  const model = tf.sequential()
  model.add(tf.layers.conv2d({ inputShape: [28, 28, 1], filters: 8, kernelSize: 5, activation: 'relu' }))
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }))
  model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, useBias: false }))
  model.add(tf.layers.batchNormalization({ momentum: 0.9 }))
  model.add(tf.layers.activation({ activation: 'relu' }))
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }))
  model.add(tf.layers.flatten())
  model.add(tf.layers.dropout({ rate: 0.1 }))
  model.add(tf.layers.dense({ units: 64, activation: 'relu' }))
  model.add(tf.layers.dense({ units: 10, activation: 'softmax' }))
  return model
}
