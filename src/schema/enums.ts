/** Enums shared by several type families. */
import { builder } from './builder.js';
import { OUTPUT_FORMATS, type OutputFormat, SIZE_FITS, type SizeFit } from '../inference/imageIO.js';
import { EDIT_SCHEDULER_NAMES } from '../inference/schedulers/types.js';
import { WEBHOOK_EVENTS, type WebhookEventName } from '../jobs/webhooks.js';
import { NOISE_GENERATORS } from '../inference/random.js';

export const JobStatusEnum = builder.enumType('JobStatus', { values: ['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const });
export const CancelReasonEnum = builder.enumType('CancelReason', { values: ['CLIENT', 'SHUTDOWN', 'TIMEOUT'] as const });
export const ImageFormatEnum = builder.enumType('ImageFormat', { values: OUTPUT_FORMATS.map((f) => f.toUpperCase() as Uppercase<OutputFormat>) });
export const SchedulerNameEnum = builder.enumType('SchedulerName', { values: EDIT_SCHEDULER_NAMES });
export const SizeFitEnum = builder.enumType('SizeFit', {
  description:
    'How an input meets an explicit size of another aspect ratio: PAD scales it inside and fills the rest with white (the whole picture is kept; the default), CROP scales it to cover and trims the centre, STRETCH scales each axis on its own.',
  values: SIZE_FITS.map((f) => f.toUpperCase() as Uppercase<SizeFit>),
});
export const WebhookEventEnum = builder.enumType('WebhookEvent', {
  description: "Job events a webhook can receive (as `edit.<name>` in the body's `type`).",
  values: WEBHOOK_EVENTS.map((e) => e.toUpperCase() as Uppercase<WebhookEventName>),
});
export const NoiseGeneratorEnum = builder.enumType('NoiseGenerator', {
  values: NOISE_GENERATORS,
  description:
    'What a seed seeds. TORCH (the default): torch.Generator("cpu").manual_seed(seed), drawn in diffusers\' order, so a seed gives the image diffusers gives. XOSHIRO: the generator seeds meant before TORCH became the default.',
});
