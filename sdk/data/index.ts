// sdk/data: datasets in memory (dataset.ts), readers (IDX, image folders, ImageNet-C, labelled
// video), model-input preprocessing, the 15 corruptions at 5 severities, shift streams,
// synthetic RGB scenes and contact sheets.
export { checkDataset, concat, imageAt, imageSize, numClasses, packLabels, psnr, select, take, type Dataset, type Labels } from './dataset.ts';
export { encodeIdx, fashionMnistDir, IDX_CLASSES_FILE, readIdxClasses, writeIdxClasses, findIdxPair, idxToDataset, listIdxNames, parseIdx, readFashionMnist, readIdx, readIdxDataset, readIdxDir, writeIdx, writeIdxDataset, type IdxArray, type WriteIdxOptions } from './idx.ts';
export { labelFolderName, matchClassFolders, type ClassMatch } from './classmatch.ts';
export { isFolder } from './entries.ts';
export { checkLabelRange } from './labelrange.ts';
export { classFolders, decodeImage, IMAGE_EXTENSIONS, readImageFolder, readUnlabelledImages, writeImageFolder, type ImageFolderOptions } from './folder.ts';
export { listImageNetC, readImageNetC, type CorruptedDomain, type ImageNetCOptions } from './imagenetc.ts';
export { readLabelledVideo, readVideoLabels, sidecarPathFor, VideoLabelsSchema, writeLabelledVideo, type ReadVideoOptions, type VideoLabels, type WriteVideoOptions } from './video.ts';
export { parsePreprocess, preprocessBatch, PreprocessSchema, type InputTensor, type Preprocess } from './preprocess.ts';
export { CORRUPTIONS, SEVERITIES, corrupt, corruptImages, getCorruption, isCorruptionName, parseCorruptionList, parseSeverities, type Batch, type Corruption, type CorruptionName, type CorruptOptions, type Severity } from './corruptions/index.ts';
export { LabelOrderSchema, STREAM_PRESETS, StreamSpecSchema, materializeStream, orderByLabels, parseStreamSpec, planStream, resolveStreamSpec, streamDomains, type LabelOrder, type StreamData, type StreamPlan, type StreamSpec, type StreamSpecInput } from './streams.ts';
export { DataRng, sampleDirichlet } from './rng.ts';
export { frameToImage, imageToBgrMat } from './cv.ts';
export { guardOpenCvTeardown } from './cv-teardown.ts';
export { syntheticScene, syntheticScenes } from './synthetic.ts';
export { contactSheet, type ContactSheetOptions } from './contact.ts';
